"""``backends:``: the models that answer (OpenAI-compatible servers, in-process models)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Discriminator, Field, Tag

from ensemble.config.base import Device, DType, StrictModel


class OpenAIBackendConfig(StrictModel):
    """Any OpenAI-compatible server: vLLM, llama.cpp server, TGI, ..."""

    kind: Literal["openai"] = "openai"
    base_url: AnyHttpUrl  # absolute http(s) URL, e.g. http://vllm:8000/v1
    model: str
    api_key_env: str | None = None  # name of the env var holding the key; never the key itself
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_connections: int = Field(64, ge=1)  # calls in flight to this upstream at once
    # Calls waiting for one of those connections; more are shed with 503 + Retry-After.
    max_queue: int = Field(1024, ge=0)
    # Extra sampling params sent with every request (top_k, min_p, repetition_penalty...).
    params: dict[str, Any] = Field(default_factory=dict)
    expose: bool = True  # also serve this backend alone as a pass-through model
    # Tool definitions longer than this (JSON characters) are not sent when the model may
    # answer in text anyway (tool_choice auto/absent); None sends them all (see README).
    max_tools_chars: int | None = Field(None, ge=0)


class ChunkedModelConfig(StrictModel):
    """A GGUF file shipped as raw byte chunks across several installed Python packages.

    The chunks are concatenated in the order listed, checked against ``sha256`` and kept as
    ``filename`` in the model cache (see ``ensemble.backends.model_path``).
    """

    chunks: list[str] = Field(min_length=1)  # importable package names, first chunk first
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of the whole assembled file
    filename: str = Field("model.gguf", pattern=r"^[A-Za-z0-9._-]+\.gguf$")


def _model_kind(value: Any) -> str:
    return "path" if isinstance(value, str) else "chunks"


# A string (path, package:NAME, package:PRESET) or a chunk mapping; the discriminator makes a
# bad mapping report its own field (model.chunks.sha256), not "should be a valid string".
ModelReference = Annotated[
    Annotated[str, Tag("path")] | Annotated[ChunkedModelConfig, Tag("chunks")],
    Discriminator(_model_kind),
]


class LocalBackendConfig(StrictModel):
    """An in-process model. ``llamacpp`` runs a GGUF file; ``transformers`` an HF model (GPU path)."""

    kind: Literal["local"] = "local"
    runtime: Literal["llamacpp", "transformers"] = "llamacpp"
    # llamacpp: a .gguf path, "package:NAME" for the GGUF shipped inside an installed package,
    # "package:PRESET" for a known chunked model (model_path.CHUNKED_MODELS), or a
    # {chunks, sha256, filename} mapping. transformers: hub id or local directory (gguf_file
    # selects a GGUF inside it).
    model: ModelReference
    gguf_file: str | None = None
    # transformers: the HF cache. llamacpp: where chunked models are assembled (default
    # $BLENDGATE_CACHE_DIR, else ~/.cache/blendgate).
    cache_dir: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    threads: int = Field(1, ge=1)  # one thread per model: 2-core hosts collapse with more
    parallel: int = Field(4, ge=1)  # concurrent sequences (llama.cpp slots / batch rows)
    context_length: int = Field(4096, ge=256)
    timeout_s: float = 120.0
    params: dict[str, Any] = Field(default_factory=dict)
    expose: bool = True
    max_tools_chars: int | None = Field(None, ge=0)  # as for OpenAIBackendConfig
    # llamacpp: the Jinja chat template; None keeps the GGUF's own. "chatml-tools" is the
    # shipped ChatML template with Hermes-style <tool_call> tools (ensemble/backends/templates),
    # anything else a path to a .jinja file.
    chat_template: str | None = None


BackendConfig = Annotated[OpenAIBackendConfig | LocalBackendConfig, Field(discriminator="kind")]
