"""Where a torch model runs: config strings (``device``, ``dtype``) -> torch objects.

Shared by PairRM, the reward models and GenFuser, so "auto" means the same everywhere:
CUDA when available, else CPU; bfloat16 on CUDA, float32 on CPU.
"""

from __future__ import annotations

import torch

from ensemble.errors import ConfigError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; anything else is taken as written."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on CUDA, float32 elsewhere; explicit names are honoured."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)} or 'auto'",
                          key="dtype")
    return DTYPES[dtype]
