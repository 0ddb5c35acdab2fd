"""Load the GenFuser checkpoint (a T5 seq2seq model and its tokenizer).

Where the checkpoint is looked up, first match wins:

1. ``checkpoint`` is an existing directory: loaded from there.
2. ``<cache_dir>/<checkpoint>`` is a directory (the original project's plain layout).
3. The Hugging Face cache layout (``<cache_dir or HF default>/models--org--name/snapshots/…``),
   read without touching the network.
4. A hub download into ``cache_dir`` (fails cleanly when the hub is unreachable).

dtype ``"auto"`` means bfloat16 on CUDA (the checkpoint's own dtype) and float32 on CPU; the
original loads bfloat16 everywhere, which is slow and lossy on most CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

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


def _sources(checkpoint: str, cache_dir: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Candidate ``(path_or_id, from_pretrained kwargs)`` in lookup order."""
    found: list[tuple[str, dict[str, Any]]] = []
    if Path(checkpoint).expanduser().is_dir():
        return [(str(Path(checkpoint).expanduser()), {})]
    if cache_dir is not None and (Path(cache_dir).expanduser() / checkpoint).is_dir():
        found.append((str(Path(cache_dir).expanduser() / checkpoint), {}))
    found.append((checkpoint, {"cache_dir": cache_dir, "local_files_only": True}))
    found.append((checkpoint, {"cache_dir": cache_dir}))
    return found


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
    errors: list[str] = []
    for source, kwargs in _sources(checkpoint, cache_dir):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForSeq2SeqLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
        except (OSError, ValueError) as exc:
            errors.append(f"{source} {kwargs or ''}: {exc}".strip())
            continue
        model = model.to(target).eval()
        return LoadedFuser(model=model, tokenizer=tokenizer, device=target, dtype=torch_dtype)
    raise ConfigError(
        f"cannot load GenFuser checkpoint {checkpoint!r}: " + " | ".join(errors),
        key="fuser.checkpoint",
    )
