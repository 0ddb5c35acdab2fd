"""What every config section shares: strict frozen models, device and dtype names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Device = str  # "cpu", "cuda", "cuda:1", "mps", or "auto" (cuda when available, else cpu)

DType = Literal["auto", "float32", "float16", "bfloat16"]


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (typos surface), values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
