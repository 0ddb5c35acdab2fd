"""Frozen domain values that flow gateway -> ensemble (fan-out -> rank -> fuse) -> gateway.

These are *not* the OpenAI wire models (those live in ``gateway.protocol``); the gateway
converts between the two in ``gateway.convert``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

Role = Literal["system", "developer", "user", "assistant", "tool"]


# One OpenAI tool call, exactly as on the wire: {"id", "type": "function",
# "function": {"name", "arguments": "<JSON text>"}} (a streamed piece also has "index").
ToolCall = Mapping[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str | None = None  # a ``role: tool`` turn: the call it answers
    # The content parts as sent (wire JSON) when they hold images; ``content`` is their text.
    # Only vision backends are sent them (see ensemble.vision).
    parts: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """Generation knobs passed on to members. ``None`` means "backend default".

    Besides sampling, this carries the OpenAI output controls a backend forwards as they are:
    ``tools``/``tool_choice``/``parallel_tool_calls``, ``response_format`` and
    ``logprobs``/``top_logprobs`` (wire JSON, already validated by the gateway).
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[str, float] | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # Backend-specific extras (top_k, min_p, repetition_penalty, ...), merged last.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def merged(self, overrides: Mapping[str, Any]) -> SamplingParams:
        """Return a copy where ``overrides`` (config-level member params) fill the gaps.

        Request values win over config values, except for keys the request left unset.
        """
        known = {f for f in self.__dataclass_fields__ if f != "extra"}
        updates: dict[str, Any] = {}
        extra = dict(overrides.get("extra", {}))
        for key, value in overrides.items():
            if key == "extra":
                continue
            if key in known:
                if getattr(self, key) in (None, ()):
                    updates[key] = tuple(value) if key in ("stop", "tools") else value
            else:
                extra.setdefault(key, value)
        extra.update(self.extra)
        return SamplingParams(**{**self.__dict__, **updates, "extra": extra})

    def without_tools(self) -> SamplingParams:
        """These params for a call that must answer in text (e.g. an LLM fuser)."""
        return replace(self, tools=(), tool_choice=None, parallel_tool_calls=None)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class Completion:
    """One finished sample from a backend."""

    text: str
    finish_reason: str | None = "stop"
    usage: Usage | None = None  # usage of the whole upstream call, on the first sample only
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Mapping[str, Any] | None = None  # OpenAI's choice.logprobs, unchanged
    refusal: str | None = None
    backend: str | None = None  # who answered, when a fallback chain could have used another


@dataclass(frozen=True)
class TextDelta:
    """One streamed piece of text. The last delta of a stream carries finish_reason/usage."""

    text: str
    index: int = 0
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # OpenAI delta pieces, each with its "index"
    logprobs: Mapping[str, Any] | None = None  # this chunk's choice.logprobs
    refusal: str | None = None
    backend: str | None = None  # as for Completion

    @property
    def empty(self) -> bool:
        """Carries nothing but, perhaps, the end of a sample."""
        return not (self.text or self.tool_calls or self.logprobs or self.refusal)


@dataclass(frozen=True)
class Candidate:
    """A member's answer, as ranked and fused."""

    member: str
    sample: int
    text: str
    finish_reason: str | None
    latency_s: float
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class MemberFailure:
    member: str
    error_type: str
    message: str
    latency_s: float


@dataclass(frozen=True)
class Ranking:
    """Scores (higher = better) and competition ranks (1 = best), aligned with the candidates."""

    scores: tuple[float, ...]
    ranks: tuple[int, ...]

    def order(self) -> list[int]:
        """Candidate indices best first; ties keep the original order."""
        return sorted(range(len(self.ranks)), key=lambda i: (self.ranks[i], i))


@dataclass(frozen=True)
class FuseStream:
    """What a fuser returns: who fuses, and the text as it is produced."""

    fuser: str
    deltas: AsyncIterator[TextDelta]


@dataclass(frozen=True)
class StageTimings:
    fanout_s: float = 0.0
    rank_s: float = 0.0
    fuse_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class UsagePart:
    """The tokens one part of an ensemble answer used: a member's upstream call, or the fuse
    (all ``n`` fused choices together). The answer's ``usage`` is the sum of its parts."""

    stage: Literal["member", "fuser"]
    name: str  # the member's label, or the fuser that answered (genfuser, llm, none...)
    usage: Usage


class AnswerPath(StrEnum):
    """Which way an ensemble answer went (``ensemble.adaptive``); the wire and metric value."""

    FUSED = "fused"  # the full fan-out, ranked, sent to the fuser (today's blend)
    SKIP_FUSION = "skip_fusion"  # the ranking was confident: its top candidate answered
    CASCADE = "cascade"  # an earlier, cheaper cascade stage answered with its top candidate
    HEDGED = "hedged"  # the first valid candidate answered; the other members were cancelled
    VOTE = "vote"  # the most common (normalised) answer answered


@dataclass(frozen=True)
class PathReport:
    """How the adaptive policy decided: the path, the stage that answered (0-based; the
    ensemble's own members are the last stage, ``len(cascade)``), whether the fuser ran, why,
    and the measures it decided on (None: not measured)."""

    path: AnswerPath
    stage: int = 0
    fused: bool = True
    reason: str = ""
    margin: float | None = None
    agreement: float | None = None
    early_stop: bool = False  # members were cut once enough candidates agreed
    escalated: tuple[str, ...] = ()  # why each earlier stage did not answer


@dataclass(frozen=True)
class BlendReport:
    """Opt-in transparency: every candidate with score/rank, failures, timings, fuser used,
    and the answer's usage broken down per member and fuser."""

    candidates: Sequence[Candidate]
    ranking: Ranking | None
    failures: Sequence[MemberFailure]
    fuser: str | None
    timings: StageTimings
    usage: Sequence[UsagePart] = ()
    path: PathReport = field(default_factory=lambda: PathReport(AnswerPath.FUSED))


@dataclass(frozen=True)
class BlendRequest:
    """One chat request as the engine sees it (already validated and clamped by the gateway)."""

    model: str
    messages: Sequence[ChatMessage]
    params: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    return_candidates: bool = False


@dataclass(frozen=True)
class Choice:
    index: int
    text: str
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Mapping[str, Any] | None = None
    refusal: str | None = None
    backend: str | None = None  # as for Completion


@dataclass(frozen=True)
class BlendResult:
    model: str
    choices: Sequence[Choice]
    usage: Usage
    report: BlendReport | None = None  # always set for ensembles; the gateway shows it on request


@dataclass(frozen=True)
class StreamEnd:
    """Last event of ``BlendEngine.stream``: total usage and the opt-in report."""

    usage: Usage
    report: BlendReport | None = None


@dataclass(frozen=True)
class ServedModel:
    id: str
    kind: Literal["ensemble", "single", "experiment"]
    members: tuple[str, ...] = ()
