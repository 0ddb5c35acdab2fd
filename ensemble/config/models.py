"""``models:``: the ids served: ensembles (members, ranker, fuser, tasks, tools) and singles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ensemble.config.adaptive import (
    ConfidenceConfig,
    EarlyStopConfig,
    Strategy,
    strategy_problems,
)
from ensemble.config.base import StrictModel
from ensemble.config.fusers import FuserConfig, SelectFuserConfig
from ensemble.config.rankers import ConsensusRankerConfig, NoRankerConfig, RankerConfig


class MemberConfig(StrictModel):
    backend: str
    samples: int = Field(1, ge=1, le=64)
    params: dict[str, Any] = Field(default_factory=dict)  # sampling overrides for this member


class CascadeStageConfig(StrictModel):
    """A cheaper stage asked before the ensemble's own members (the last, full stage): it
    answers with its top candidate when ``accept`` holds, else the next stage is asked."""

    members: list[MemberConfig] = Field(min_length=1)
    accept: ConfidenceConfig


class TaskRoutingConfig(StrictModel):
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


class ToolPolicyConfig(StrictModel):
    """When an ensemble answers with a tool call (see ensemble/output_policy.py)."""

    # "best": when the ranked-best candidate is a call; "majority": when at least
    # ``majority`` of the screened candidates are calls (the best-ranked call wins).
    decide: Literal["best", "majority"] = "best"
    majority: float = Field(0.5, gt=0, le=1)


class EnsembleModelConfig(StrictModel):
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
    # A request with image_url parts: "reject" answers 400 unless every member is vision-capable;
    # "drop_members" asks only the vision-capable members (the dropped ones are reported).
    images: Literal["reject", "drop_members"] = "reject"
    # Adaptive ensembling (ensemble/adaptive/), all off by default. blend: fan out, rank,
    # fuse; hedged: the first valid candidate answers; vote: the most common answer does.
    strategy: Strategy = "blend"
    skip_fusion: ConfidenceConfig | None = None  # confident ranking: the top candidate answers
    cascade: list[CascadeStageConfig] = Field(default_factory=list)  # stages before `members`
    early_stop: EarlyStopConfig | None = None  # stop waiting once enough candidates agree
    # The embedder behind `agreement` and `early_stop.similarity`; None: the ranker's config
    # when it is a consensus ranker (one MiniLM for both), else the default consensus model.
    similarity: ConsensusRankerConfig | None = None

    @model_validator(mode="after")
    def _coherent_policy(self) -> EnsembleModelConfig:
        problems = strategy_problems(self.strategy, skip_fusion=self.skip_fusion is not None,
                                     cascade=bool(self.cascade),
                                     early_stop=self.early_stop is not None)
        margins = [r.margin for r in (self.skip_fusion, *(s.accept for s in self.cascade))
                   if r is not None]
        samples = sum(m.samples for m in self.members)
        if self.early_stop is not None and self.early_stop.agree > samples:
            problems.append(f"early_stop.agree={self.early_stop.agree} exceeds the {samples} "
                            "samples the members produce: it could never stop early")
        if isinstance(self.ranker, NoRankerConfig) and any(m is not None for m in margins):
            problems.append("ranker none keeps the members' order: its scores have no margin")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def similarity_ranker(self) -> ConsensusRankerConfig:
        """The consensus config whose similarity measures agreement (see ``similarity``)."""
        if self.similarity is not None:
            return self.similarity
        if isinstance(self.ranker, ConsensusRankerConfig):
            return self.ranker
        return ConsensusRankerConfig()

    def needs_similarity(self) -> bool:
        """Whether any policy measures agreement by embeddings (vote compares answers)."""
        rules = [self.skip_fusion, *(s.accept for s in self.cascade)]
        agreement = any(r is not None and r.agreement is not None for r in rules)
        return agreement or (self.early_stop is not None and self.strategy == "blend")


# Failures before the first token that move a single model's request to its next fallback
# backend: connection refused/reset, a timeout, an HTTP 5xx, an HTTP 429, a connection dropped
# before the first token, the backend's own queue full. A client error (other 4xx) never does.
FallbackTrigger = Literal["connect", "timeout", "5xx", "429", "dropped", "overloaded"]
ALL_FALLBACK_TRIGGERS: tuple[FallbackTrigger, ...] = (
    "connect", "timeout", "5xx", "429", "dropped", "overloaded")


class SingleModelConfig(StrictModel):
    type: Literal["single"] = "single"
    id: str
    backend: str
    fallbacks: list[str] = Field(default_factory=list)  # tried in order after ``backend``
    fallback_on: list[FallbackTrigger] = Field(default_factory=lambda: [*ALL_FALLBACK_TRIGGERS])
    # Bounds the whole request, every streamed token included: 504 `deadline_exceeded`, or
    # mid-stream one error event. None: only the backend's timeout_s, per read.
    deadline_s: float | None = Field(None, gt=0)


ModelConfig = Annotated[EnsembleModelConfig | SingleModelConfig, Field(discriminator="type")]
