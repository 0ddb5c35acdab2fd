"""Load the GenFuser checkpoint (a T5 seq2seq model and its tokenizer).

Where the checkpoint is looked up: :func:`ensemble.checkpoints.resolve_dir` (a directory, the
original project's ``<cache_dir>/<checkpoint>`` layout, the Hugging Face cache without network,
else a hub download, which fails cleanly when the hub is unreachable).

The tokenizer is the checkpoint's ``tokenizer.json`` loaded verbatim, with its special tokens
(:func:`ensemble.checkpoints.load_tokenizer_file`, shared with PairRM): ``AutoTokenizer`` in
transformers 5 rebuilds a T5 tokenizer's pipeline from class defaults and would tokenise
differently from the original whenever the file deviates from them. A checkpoint with only
``spiece.model`` is converted by ``AutoTokenizer``.

dtype ``"auto"`` means bfloat16 on CUDA (the checkpoint's own dtype) and float32 on CPU; the
original loads bfloat16 everywhere, which is slow and lossy on most CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from ensemble.checkpoints import has_tokenizer_file, load_tokenizer_file, resolve_dir
from ensemble.errors import ConfigError
from ensemble.placement import resolve_device, resolve_dtype


@dataclass(frozen=True)
class LoadedFuser:
    """A model in eval mode on its device, with its tokenizer."""

    model: Any  # transformers T5ForConditionalGeneration (or any seq2seq LM)
    tokenizer: Any  # transformers T5 tokenizer
    device: torch.device
    dtype: torch.dtype

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)


def load_fuser(
    checkpoint: str,
    *,
    cache_dir: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> LoadedFuser:
    """Load tokenizer and model (blocking: call it on the model's own thread)."""
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    try:
        directory = resolve_dir(checkpoint, cache_dir, key="fuser.checkpoint")
        tokenizer = load_fuser_tokenizer(directory)
        model = AutoModelForSeq2SeqLM.from_pretrained(str(directory), dtype=torch_dtype)
    except (ConfigError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot load GenFuser checkpoint {checkpoint!r}: {exc}",
                          key="fuser.checkpoint") from exc
    model = model.to(target).eval()
    return LoadedFuser(model=model, tokenizer=tokenizer, device=target, dtype=torch_dtype)


def load_fuser_tokenizer(directory: Path) -> Any:
    """``tokenizer.json`` verbatim (the ids the original got); ``spiece.model`` only without one."""
    if has_tokenizer_file(directory):
        return load_tokenizer_file(directory)
    return AutoTokenizer.from_pretrained(str(directory))
