"""What goes to the store: one frozen record per event, written off the request path."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["win", "tie", "loss"]
Role = Literal["served", "shadow"]


@dataclass(frozen=True)
class CompletionEvent:
    """One answered chat request (served to a client, or run in the shadow of one)."""

    id: str  # the completion id the client saw (shadow runs: "<served id>:shadow")
    model: str
    role: Role = "served"
    experiment: str | None = None
    arm: str | None = None
    user_hash: str | None = None  # a hash of the stickiness key, never the key itself
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # per member: candidates, mean latency_s, failures, prompt_tokens, completion_tokens
    members: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class VerdictEvent:
    """A judge's verdict on ``arm`` against ``baseline_arm`` for one request."""

    experiment: str
    request_id: str
    arm: str
    baseline_arm: str
    outcome: Outcome  # from ``arm``'s side
    score: float
    baseline_score: float
    judge: str
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class FeedbackEvent:
    """A human vote on one completion; ``score`` is in [0, 1] (thumbs up = 1, rating 5 = 1)."""

    id: str
    completion_id: str
    model: str
    score: float
    experiment: str | None = None
    arm: str | None = None
    rating: int | None = None
    thumbs: str | None = None
    comment: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TranscriptEvent:
    """What a completion was asked and answered (only with ``store.record_transcripts``):
    the text behind feedback and verdicts, for ``blendgate export-preferences``."""

    completion_id: str  # a CompletionEvent id (shadow runs: "<served id>:shadow")
    messages: list[dict[str, str]]  # the request's chat, role and content only
    text: str  # choice 0
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class EvalAnswer:
    """A cached answer of ``blendgate eval``: one model on one prompt of one run."""

    key: str
    run: str
    model: str
    prompt_id: str
    text: str
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class KeyUsageEvent:
    """The tokens one request of a budgeted API key used (``key`` is the key's name)."""

    key: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class EvalScores:
    """Cached scores of ``blendgate eval --pool``: a judge's verdict on some answers to one
    prompt, or a ranker's ranking of a prompt's candidate pool (``elapsed_s``: how long it
    took, the ranking time a selection policy's latency includes)."""

    key: str
    run: str
    scorer: str  # the judge's or ranker's name
    prompt_id: str
    scores: list[float]
    elapsed_s: float
    created_at: float = field(default_factory=time.time)


Event = (CompletionEvent | VerdictEvent | FeedbackEvent | EvalAnswer | KeyUsageEvent
         | TranscriptEvent | EvalScores)
