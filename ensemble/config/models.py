"""``models:``: the ids served: ensembles (members, ranker, fuser, tasks, tools) and singles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ensemble.config.base import StrictModel
from ensemble.config.fusers import FuserConfig, SelectFuserConfig
from ensemble.config.rankers import ConsensusRankerConfig, RankerConfig


class MemberConfig(StrictModel):
    backend: str
    samples: int = Field(1, ge=1, le=64)
    params: dict[str, Any] = Field(default_factory=dict)  # sampling overrides for this member


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


class SingleModelConfig(StrictModel):
    type: Literal["single"] = "single"
    id: str
    backend: str
    # Bounds the whole request, every streamed token included: 504 `deadline_exceeded`, or
    # mid-stream one error event. None: only the backend's timeout_s, per read.
    deadline_s: float | None = Field(None, gt=0)


ModelConfig = Annotated[EnsembleModelConfig | SingleModelConfig, Field(discriminator="type")]
