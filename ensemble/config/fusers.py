"""``fuser:`` sections: what turns the top candidates into one answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ensemble.config.base import Device, DType, StrictModel
from ensemble.config.remote import RemoteServiceConfig


class LLMFuserConfig(StrictModel):
    """Mixture-of-Agents style synthesis through a configured backend."""

    type: Literal["llm"] = "llm"
    backend: str
    # Template of the synthesis system instruction; ``{candidates}`` receives the numbered
    # candidates. None uses the built-in template (see ensemble/fusers/llm.py).
    template: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class GenFuserConfig(StrictModel):
    type: Literal["genfuser"] = "genfuser"
    checkpoint: str = "llm-blender/gen_fuser_3b"
    cache_dir: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"  # bf16 on GPU, fp32 on CPU
    max_new_tokens: int = Field(128, ge=1)
    num_beams: int = Field(4, ge=1)
    do_sample: bool = False
    candidate_max_length: int = Field(128, ge=1)
    max_length: int = Field(1024, ge=16)
    max_batch_size: int = Field(8, ge=1)
    batch_wait_ms: float = Field(5.0, ge=0)
    threads: int = Field(1, ge=1)
    # Used when a candidate is longer than candidate_max_length tokens (GenFuser would cut it).
    fallback: LLMFuserConfig | None = None


class SelectFuserConfig(StrictModel):
    """No fusion: answer with the top-ranked candidate."""

    type: Literal["none"] = "none"


class RemoteFuserConfig(RemoteServiceConfig):
    """The streamed ``POST /v1/fuse`` of another blendgate (its ``fuse_service``)."""

    type: Literal["remote"] = "remote"
    # When the remote fuser cannot start (down, timeout, HTTP error): "fail" raises FuserError,
    # as an in-process fuser does; "top_candidate" answers with the best candidate (fuser
    # "none" in the report). A failure after text has streamed is always an error.
    on_error: Literal["fail", "top_candidate"] = "fail"


FuserConfig = Annotated[
    LLMFuserConfig | GenFuserConfig | SelectFuserConfig | RemoteFuserConfig,
    Field(discriminator="type"),
]


def llm_fuser(fuser: FuserConfig | None) -> LLMFuserConfig | None:
    """The LLM fuser a fuser config runs through (itself, or a GenFuser's fallback), if any."""
    if isinstance(fuser, LLMFuserConfig):
        return fuser
    return fuser.fallback if isinstance(fuser, GenFuserConfig) else None

