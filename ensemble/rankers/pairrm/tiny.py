"""Tiny random PairRM checkpoints in exactly the two public layouts, for tests and benchmarks.

``build_tiny_checkpoints(root)`` writes, in a few seconds on a CPU and with no download:

- ``root/PairRM-hf``: the ``llm-blender/PairRM-hf`` layout;
- ``root/PairRM``: the ``llm-blender/PairRM`` layout (ranker ``config.json`` whose
  ``model_name`` points at the backbone below);
- ``root/deberta-v3-tiny``: a deberta-v2 ``config.json`` with a larger vocabulary than the
  checkpoint's, as the published backbone has (the loader resizes).

Both load with :func:`~ensemble.rankers.pairrm.load_pairrm`; their weights are random (seeded),
so scores are meaningless but deterministic. Like transformers' ``tiny-random-*`` checkpoints,
they exercise the real loading and scoring code at a tiny size.

The SentencePiece model is trained on the fly (on the text of transformers' DeBERTa-v2 modeling
file, always installed) with DeBERTa-v3's special ids [PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3;
[MASK] is appended right after the pieces and the four prompt tokens right after [MASK], as
LLM-Blender's collator does. With a tiny vocabulary those ids are V..V+4 instead of
128000..128004, so the loader checks the rule "the four ids after [MASK]" (which gives exactly
128001..128004 on the real DeBERTa-v3 vocabulary) plus agreement with ``added_tokens.json`` and
the ``-hf`` config keys.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

__all__ = ["CANDIDATE_MAX", "HIDDEN", "SOURCE_MAX", "backbone_config", "build_tiny_checkpoints"]

SOURCE_MAX, CANDIDATE_MAX = 1224, 412
HIDDEN = 32


def _train_spm(directory: Path) -> Path:
    import sentencepiece as spm
    import transformers.models.deberta_v2.modeling_deberta_v2 as corpus_module

    text = Path(corpus_module.__file__).read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(directory / "spm"), vocab_size=500,
        model_type="unigram", character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
        minloglevel=2, num_threads=1,
    )
    corpus.unlink()
    (directory / "spm.vocab").unlink()
    return directory / "spm.model"


def _write_tokenizer(directory: Path, spm_model: Path) -> dict[str, int]:
    from transformers import DebertaV2Tokenizer

    shutil.copy(spm_model, directory / "spm.model")
    tokenizer = DebertaV2Tokenizer.from_pretrained(str(directory))  # converts spm.model
    tokenizer.add_tokens(["<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"])
    tokenizer.save_pretrained(str(directory))
    names = ["[MASK]", "<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"]
    added = dict(zip(names, tokenizer.convert_tokens_to_ids(names), strict=False))
    (directory / "added_tokens.json").write_text(json.dumps(added), encoding="utf-8")
    special = {"bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]",
               "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
               "mask_token": "[MASK]"}
    (directory / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    added["len"] = len(tokenizer)
    return added


def backbone_config(vocab_size: int) -> dict[str, Any]:
    """The tiny deberta-v2 backbone's config (hidden size ``HIDDEN``, two layers)."""
    return {
        "model_type": "deberta-v2", "vocab_size": vocab_size, "hidden_size": HIDDEN,
        "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "layer_norm_eps": 1e-7, "max_position_embeddings": 512,
        "max_relative_positions": -1, "position_buckets": 32, "relative_attention": True,
        "pos_att_type": ["p2c", "c2p"], "share_att_key": True, "norm_rel_ebd": "layer_norm",
        "position_biased_input": False, "type_vocab_size": 0, "pad_token_id": 0,
        "pooler_dropout": 0, "pooler_hidden_act": "gelu", "pooler_hidden_size": HIDDEN,
    }


def _random_state(vocab_size: int, prefix_ids: list[int]) -> dict[str, torch.Tensor]:
    from transformers import DebertaV2Config

    from ensemble.rankers.pairrm.model import PairRMModel, PrefixIds

    torch.manual_seed(1234)
    config = backbone_config(vocab_size)
    config.pop("model_type")
    model = PairRMModel(DebertaV2Config(**config), PrefixIds(*prefix_ids))
    with torch.no_grad():  # a livelier head than the default init, so logits are O(0.1)
        for p in model.head_layer.parameters():
            p.normal_(0.0, 0.5)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def build_tiny_checkpoints(root: Path) -> dict[str, Path]:
    """Write the tiny checkpoints under ``root`` (an empty directory); returns their
    directories: ``hf``, ``original``, ``backbone``, and ``root`` itself."""
    spm_model = _train_spm(root)
    hf_dir, orig_dir, backbone_dir = root / "PairRM-hf", root / "PairRM", root / "deberta-v3-tiny"
    for d in (hf_dir, orig_dir, backbone_dir):
        d.mkdir()
    ids = _write_tokenizer(hf_dir, spm_model)
    _write_tokenizer(orig_dir, spm_model)
    prefix = [ids["<|source|>"], ids["<|candidate1|>"], ids["<|candidate2|>"], ids["<|candidate|>"]]
    state = _random_state(ids["len"], prefix)
    for d in (hf_dir, orig_dir):
        save_file(state, str(d / "model.safetensors"))

    hf_config = {**backbone_config(ids["len"]), "architectures": ["DebertaV2PairRM"],
                 "torch_dtype": "float32", "n_tasks": 1, "drop_out": 0.05,
                 "source_prefix_id": prefix[0], "cand1_prefix_id": prefix[1],
                 "cand2_prefix_id": prefix[2], "cand_prefix_id": prefix[3]}
    (hf_dir / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")

    # The backbone as published: a stock vocab larger than the checkpoint's (128100 vs 128005).
    (backbone_dir / "config.json").write_text(
        json.dumps(backbone_config(ids["len"] + 95)), encoding="utf-8")
    ranker_config = {
        "ranker_type": "pairranker", "model_type": "deberta", "model_name": str(backbone_dir),
        "cache_dir": "./hf_models/deberta-v3-large/", "load_checkpoint": None,
        "source_maxlength": SOURCE_MAX, "candidate_maxlength": CANDIDATE_MAX, "n_tasks": 1,
        "num_pos": 5, "num_neg": 5, "sub_sampling_mode": "all_pair", "sub_sampling_ratio": 0.4,
        "loss_type": "instructgpt", "reduce_type": "linear", "inference_mode": "bubble",
        "drop_out": 0.05, "fp16": True,
    }
    for name in ("config.json", "ranker_config.json"):
        (orig_dir / name).write_text(json.dumps(ranker_config, indent=2), encoding="utf-8")
    return {"hf": hf_dir, "original": orig_dir, "backbone": backbone_dir, "root": root}
