"""Load a PairRM checkpoint in either public layout (spec section 2) into a :class:`PairRM`.

Where the files come from: :func:`ensemble.checkpoints.resolve_dir` and, for an original-layout
backbone's ``config.json``, :func:`ensemble.checkpoints.resolve_file` (a local directory, the
Hugging Face cache without network, else a download; offline hosts get a :class:`ConfigError`
that names the repo).

Layouts (:func:`read_layout`):

- ``-hf`` (``llm-blender/PairRM-hf``): ``config.json`` is a deberta-v2 config plus the custom keys
  ``n_tasks``, ``drop_out`` and ``*_prefix_id``. Rankers written by ``blendgate train-ranker``
  use this layout too, and may have a BERT-family backbone (``model_type`` ``bert``, ...) and the
  optional keys ``source_max_length`` / ``candidate_max_length`` (the lengths they were trained
  with; default 1224 / 412). Their prompt tokens follow the base vocabulary, not ``[MASK]``, so
  for them the ids declared in the config are the rule.
- original (``llm-blender/PairRM``): ``config.json`` is LLM-Blender's *ranker* config
  (``model_type: deberta``, ``model_name: microsoft/deberta-v3-large``). It is never given to
  AutoConfig (that would build DeBERTa v1); the DeBERTa-v2 config is read from the backbone it
  names (local path, cache, or hub) with ``vocab_size`` set to ``len(tokenizer)``. If that
  backbone is ``microsoft/deberta-v3-large`` and cannot be found, its published values (spec 2.2)
  are used, so an offline host needs only the PairRM snapshot.

The tokenizer is always the checkpoint's own: ``tokenizer.json`` loaded verbatim
(:func:`ensemble.checkpoints.load_tokenizer_file`), else ``spm.model`` converted. The four
prompt-token ids must be the four ids right after ``[MASK]`` in the order source, candidate1,
candidate2, candidate (what LLM-Blender's collator produces: 128001..128004 for the real
DeBERTa-v3 vocabulary whose ``[MASK]`` is 128000), and must agree with ``added_tokens.json`` and
the ``-hf`` config keys when those exist; anything else fails loudly. Weights:
``model.safetensors`` loads strictly; a ``pytorch_model.bin`` (older repos) loads non-strictly with
a warning naming the missing and unexpected keys, like the original.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    DebertaV2Config,
    DebertaV2Tokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from ensemble.checkpoints import (
    has_tokenizer_file,
    load_tokenizer_file,
    resolve_dir,
    resolve_file,
)
from ensemble.errors import ConfigError
from ensemble.placement import resolve_device, resolve_dtype
from ensemble.rankers.pairrm.attention import AttentionImpl
from ensemble.rankers.pairrm.inputs import PROMPT_TOKENS
from ensemble.rankers.pairrm.model import PairRMModel, PrefixIds
from ensemble.rankers.pairrm.scoring import DEFAULT_MAX_BATCH_TOKENS, PairRM

logger = logging.getLogger(__name__)

DEBERTA_V3_LARGE = "microsoft/deberta-v3-large"
# Published config of microsoft/deberta-v3-large as repeated in PairRM-hf's config.json.
_DEBERTA_V3_LARGE_CONFIG: dict[str, Any] = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
    "intermediate_size": 4096, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": 1e-7,
    "max_position_embeddings": 512, "max_relative_positions": -1, "position_buckets": 256,
    "relative_attention": True, "pos_att_type": ["p2c", "c2p"], "share_att_key": True,
    "norm_rel_ebd": "layer_norm", "position_biased_input": False, "type_vocab_size": 0,
    "pad_token_id": 0, "pooler_dropout": 0, "pooler_hidden_act": "gelu", "pooler_hidden_size": 1024,
}
_HF_CUSTOM_KEYS = ("n_tasks", "drop_out", "source_prefix_id", "cand1_prefix_id",
                   "cand2_prefix_id", "cand_prefix_id")
_HF_LENGTH_KEYS = ("source_max_length", "candidate_max_length")  # optional (trained here)
# Encoders a ``-hf``-layout config may name besides deberta-v2 (train-ranker's backbones).
BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "electra", "mpnet", "distilbert")


@dataclass(frozen=True)
class Layout:
    """What a checkpoint directory says about the model it holds."""

    kind: str  # "hf" or "original"
    backbone: PretrainedConfig | None  # None for "original" until resolved from model_name
    backbone_name: str | None
    n_tasks: int
    drop_out: float
    source_max_length: int
    candidate_max_length: int
    declared_prefix_ids: PrefixIds | None


# ----------------------------------------------------------------------------- backbone config


def load_backbone_config(name: str, cache_dir: str | None) -> DebertaV2Config:
    """DebertaV2Config of the backbone named by an original-layout ranker config."""
    try:
        path = resolve_file(name, "config.json", cache_dir)
        data = json.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:
        if name != DEBERTA_V3_LARGE:
            raise ConfigError(f"backbone {name!r}: cannot read its config.json ({exc})",
                              key="checkpoint") from exc
        logger.warning("backbone %s not available (%s); using its published config", name, exc)
        data = dict(_DEBERTA_V3_LARGE_CONFIG)
    if data.get("model_type", "deberta-v2") != "deberta-v2":
        raise ConfigError(f"backbone {name!r} is {data.get('model_type')!r}, not deberta-v2")
    data.pop("model_type", None)
    return DebertaV2Config(**data)


def read_layout(directory: Path) -> Layout:
    """Parse ``config.json`` of either layout without building anything."""
    path = directory / "config.json"
    if not path.is_file():
        path = directory / "ranker_config.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", key="checkpoint") from exc
    model_type = data.get("model_type")
    if model_type == "deberta-v2" or (model_type in BERT_FAMILY and "source_prefix_id" in data):
        missing = [k for k in _HF_CUSTOM_KEYS if k not in data]
        if missing:
            raise ConfigError(f"{path}: {model_type} config without PairRM keys {missing}")
        ours = (*_HF_CUSTOM_KEYS, *_HF_LENGTH_KEYS, "model_type")
        backbone = {k: v for k, v in data.items() if k not in ours}
        config = (DebertaV2Config(**backbone) if model_type == "deberta-v2"
                  else AutoConfig.for_model(str(model_type), **backbone))
        return Layout(
            kind="hf", backbone=config, backbone_name=None,
            n_tasks=int(data["n_tasks"]), drop_out=float(data["drop_out"]),
            source_max_length=int(data.get("source_max_length", 1224)),
            candidate_max_length=int(data.get("candidate_max_length", 412)),
            declared_prefix_ids=PrefixIds(data["source_prefix_id"], data["cand1_prefix_id"],
                                          data["cand2_prefix_id"], data["cand_prefix_id"]),
        )
    if "model_name" in data and data.get("ranker_type", "pairranker") == "pairranker":
        return Layout(
            kind="original", backbone=None, backbone_name=str(data["model_name"]),
            n_tasks=int(data.get("n_tasks", 1)), drop_out=float(data.get("drop_out", 0.05)),
            source_max_length=int(data.get("source_maxlength") or 1224),
            candidate_max_length=int(data.get("candidate_maxlength") or 412),
            declared_prefix_ids=None,
        )
    raise ConfigError(f"{path}: neither a PairRM-hf config nor an LLM-Blender pairranker config")


# ----------------------------------------------------------------------------- tokenizer


def load_tokenizer(
    directory: Path, declared: PrefixIds | None = None
) -> tuple[PreTrainedTokenizerBase, PrefixIds]:
    """The checkpoint's own tokenizer and its verified prompt-token ids.

    The ids must be the four after ``[MASK]`` (DeBERTa, the original collator) or, for a
    non-DeBERTa backbone, exactly the ``declared`` ones of its config."""
    if not (has_tokenizer_file(directory) or (directory / "spm.model").is_file()):
        raise ConfigError(f"{directory}: no tokenizer.json or spm.model", key="checkpoint")
    if has_tokenizer_file(directory):
        # Verbatim (ensemble.checkpoints): DebertaV2Tokenizer would rebuild the pipeline from
        # its class defaults, and the ids must be the original's.
        tokenizer: PreTrainedTokenizerBase = load_tokenizer_file(directory)
    else:
        tokenizer = DebertaV2Tokenizer.from_pretrained(str(directory))  # converts spm.model
    mask_id = tokenizer.mask_token_id
    unk_id = tokenizer.unk_token_id
    if mask_id is None:
        raise ConfigError(f"{directory}: tokenizer has no [MASK] token")
    ids = tokenizer.convert_tokens_to_ids(list(PROMPT_TOKENS))
    found = PrefixIds(*(ids if isinstance(ids, list) else [ids]))
    expected = PrefixIds.after_mask(mask_id)
    if unk_id in vars(found).values() or found not in (expected, declared):
        raise ConfigError(
            f"{directory}: prompt tokens {PROMPT_TOKENS} have ids {found}, expected {expected} "
            "(the four ids after [MASK]); this is not a PairRM tokenizer", key="checkpoint",
        )
    added = directory / "added_tokens.json"
    if added.is_file():
        table = json.loads(added.read_text(encoding="utf-8"))
        listed = PrefixIds(*(table.get(t) for t in PROMPT_TOKENS))
        if listed != found:
            raise ConfigError(f"{added} lists prompt-token ids {listed}, tokenizer has {found}")
    return tokenizer, found


# ----------------------------------------------------------------------------- weights, dtype


def load_weights(model: PairRMModel, directory: Path) -> None:
    """``model.safetensors`` strictly, else ``pytorch_model.bin`` non-strictly (warns)."""
    safetensors_path, bin_path = directory / "model.safetensors", directory / "pytorch_model.bin"
    if safetensors_path.is_file():
        from safetensors.torch import load_file

        state = load_file(str(safetensors_path))
        rows = state.get("pretrained_model.embeddings.word_embeddings.weight")
        expected_rows = model.config.vocab_size
        if rows is not None and rows.shape[0] != expected_rows:
            raise ConfigError(
                f"{safetensors_path}: embedding has {rows.shape[0]} rows, tokenizer has "
                f"{expected_rows} tokens", key="checkpoint",
            )
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{safetensors_path}: {exc}", key="checkpoint") from exc
    elif bin_path.is_file():
        state = torch.load(str(bin_path), map_location="cpu", weights_only=True)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            logger.warning("%s: missing keys %s, unexpected keys %s", bin_path,
                           result.missing_keys, result.unexpected_keys)
    else:
        raise ConfigError(f"{directory}: no model.safetensors or pytorch_model.bin")


def load_pairrm(
    checkpoint: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | None = None,
    max_batch_pairs: int = 32,
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    attention: AttentionImpl = "sdpa",
    compile: bool = False,
) -> PairRM:
    """Build a ready, eval-mode :class:`PairRM` from a hub id, a cached repo or a directory.

    ``attention``: ``"sdpa"`` (fused kernel) or ``"eager"`` (transformers' module); same weights,
    same logits to float rounding. ``compile``: ``torch.compile`` the encoder (dynamic shapes);
    the first batches of new shapes pay a compile (tens of seconds on CPU).
    """
    directory = resolve_dir(checkpoint, cache_dir)
    layout = read_layout(directory)
    non_deberta = layout.backbone is not None and not isinstance(layout.backbone, DebertaV2Config)
    tokenizer, prefix_ids = load_tokenizer(
        directory, layout.declared_prefix_ids if non_deberta else None)
    if layout.declared_prefix_ids is not None and layout.declared_prefix_ids != prefix_ids:
        raise ConfigError(f"{directory}: config prefix ids {layout.declared_prefix_ids} "
                          f"!= tokenizer's {prefix_ids}", key="checkpoint")
    config = layout.backbone or load_backbone_config(layout.backbone_name or "", cache_dir)
    config.vocab_size = len(tokenizer)
    model = PairRMModel(config, prefix_ids, n_tasks=layout.n_tasks, drop_out=layout.drop_out,
                        attention=attention)
    load_weights(model, directory)
    torch_device = resolve_device(device)
    model = model.to(device=torch_device, dtype=resolve_dtype(dtype, torch_device)).eval()
    if compile:
        # In place, so state-dict keys stay unprefixed; the head and the gathers stay eager.
        model.pretrained_model.compile(dynamic=True)
    return PairRM(
        model=model, tokenizer=tokenizer, source_max_length=layout.source_max_length,
        candidate_max_length=layout.candidate_max_length, max_batch_pairs=max_batch_pairs,
        max_batch_tokens=max_batch_tokens,
    )
