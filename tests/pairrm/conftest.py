"""Tiny random PairRM checkpoints in exactly the two public layouts (spec section 2).

The SentencePiece model is trained on the fly (on the text of transformers' DeBERTa-v2 modeling
file, always installed) with DeBERTa-v3's special ids [PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3;
[MASK] is appended right after the pieces and the four prompt tokens right after [MASK], as
LLM-Blender's collator does. With a tiny vocabulary those ids are V..V+4 instead of
128000..128004, so the loader checks the rule "the four ids after [MASK]" (which gives exactly
128001..128004 on the real DeBERTa-v3 vocabulary) plus agreement with ``added_tokens.json`` and
the ``-hf`` config keys.

Fixtures (session scoped, built once):

- ``tiny_pairrm_hf_dir``: the ``llm-blender/PairRM-hf`` layout;
- ``tiny_pairrm_original_dir``: the ``llm-blender/PairRM`` layout (ranker config.json whose
  ``model_name`` points at ``tiny_backbone_dir``);
- ``tiny_backbone_dir``: a deberta-v2 ``config.json`` with a larger vocab (the loader resizes);
- ``tiny_hf_cache``: (cache_dir, repo id) holding the -hf files in the hub cache layout;
- ``tiny_pairrm``: a loaded :class:`PairRM` (fp32, CPU) from the -hf dir.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

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


def _backbone_config(vocab_size: int) -> dict[str, object]:
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
    config = _backbone_config(vocab_size)
    config.pop("model_type")
    model = PairRMModel(DebertaV2Config(**config), PrefixIds(*prefix_ids))
    with torch.no_grad():  # a livelier head than the default init, so logits are O(0.1)
        for p in model.head_layer.parameters():
            p.normal_(0.0, 0.5)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_checkpoints(tmp_path_factory.mktemp("pairrm"))


def build_tiny_checkpoints(root: Path) -> dict[str, Path]:
    """Write the tiny checkpoints under ``root`` (also used by benchmarks/bench_scale.py)."""
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

    hf_config = {**_backbone_config(ids["len"]), "architectures": ["DebertaV2PairRM"],
                 "torch_dtype": "float32", "n_tasks": 1, "drop_out": 0.05,
                 "source_prefix_id": prefix[0], "cand1_prefix_id": prefix[1],
                 "cand2_prefix_id": prefix[2], "cand_prefix_id": prefix[3]}
    (hf_dir / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")

    # The backbone as published: a stock vocab larger than the checkpoint's (128100 vs 128005).
    (backbone_dir / "config.json").write_text(
        json.dumps(_backbone_config(ids["len"] + 95)), encoding="utf-8")
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


@pytest.fixture(scope="session")
def tiny_pairrm_hf_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["hf"]


@pytest.fixture(scope="session")
def tiny_pairrm_original_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["original"]


@pytest.fixture(scope="session")
def tiny_backbone_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["backbone"]


@pytest.fixture(scope="session")
def tiny_hf_cache(tiny_checkpoints: dict[str, Path]) -> tuple[Path, str]:
    """(cache_dir, repo_id) with the -hf files under models--org--name/snapshots/<rev>/."""
    cache = tiny_checkpoints["root"] / "hf-cache"
    repo_id, revision = "llm-blender/PairRM-hf", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--llm-blender--PairRM-hf"
    shutil.copytree(tiny_checkpoints["hf"], repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision, encoding="utf-8")
    return cache, repo_id


@pytest.fixture(scope="session")
def lively_pairrm_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    """The -hf checkpoint with encoder matrices redrawn at std 0.3 (instead of 0.02).

    At the default init every hidden state at a prompt token is almost its own embedding, so
    all candidates score alike (score gaps ~1e-4) and no ranking question can be asked of it.
    With livelier attention the prompt tokens see the text: logits of a few units and score
    gaps of about 1, which low-precision arithmetic must not reorder (tests/pairrm/test_cuda.py).
    """
    directory = tiny_checkpoints["root"] / "PairRM-hf-lively"
    if not directory.exists():
        shutil.copytree(tiny_checkpoints["hf"], directory)
        enliven(directory)
    return directory


def enliven(directory: Path) -> None:
    """Redraw the encoder matrices of ``directory/model.safetensors`` at std 0.3 (seeded)."""
    from safetensors.torch import load_file

    state = load_file(str(directory / "model.safetensors"))
    generator = torch.Generator().manual_seed(7)
    for name, value in state.items():
        if value.ndim == 2 and not name.startswith("head_layer"):
            state[name] = (0.3 * torch.randn(value.shape, generator=generator)).contiguous()
    save_file(state, str(directory / "model.safetensors"))


@pytest.fixture(scope="session")
def tiny_pairrm(tiny_pairrm_hf_dir: Path):  # -> PairRM
    from ensemble.rankers.pairrm import load_pairrm

    torch.set_num_threads(1)
    return load_pairrm(str(tiny_pairrm_hf_dir), device="cpu", dtype="auto")


# ----------------------------------------------------------------------------- reward models


@pytest.fixture(scope="session")
def tiny_deberta_rm_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    """A DeBERTa-v2 sequence-classification reward model (1 label), no chat template."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

    directory = tiny_checkpoints["root"] / "deberta-rm"
    directory.mkdir()
    shutil.copy(tiny_checkpoints["hf"] / "spm.model", directory / "spm.model")
    tokenizer = DebertaV2Tokenizer.from_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    config = _backbone_config(len(tokenizer))
    config.pop("model_type")
    torch.manual_seed(7)
    model = DebertaV2ForSequenceClassification(DebertaV2Config(**config, num_labels=1))
    model.save_pretrained(str(directory))
    return directory


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
)


@pytest.fixture(scope="session")
def tiny_qwen_rm_dir(tiny_checkpoints: dict[str, Path]) -> Path:
    """A Qwen2 sequence-classification reward model whose tokenizer has a chat template."""
    import transformers.models.deberta_v2.modeling_deberta_v2 as corpus_module
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForSequenceClassification

    directory = tiny_checkpoints["root"] / "qwen-rm"
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(Path(corpus_module.__file__).read_text().splitlines(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(11)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    Qwen2ForSequenceClassification(config).save_pretrained(str(directory))
    return directory
