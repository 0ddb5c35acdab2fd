"""What the store's reads return: one named tuple per kind of row, so callers read fields by
name (``row.latency_s``), not by position; each still compares equal to a plain tuple."""

from __future__ import annotations

from typing import NamedTuple


class CompletionRef(NamedTuple):
    """What feedback needs to know about the completion it votes on."""

    id: str
    model: str
    experiment: str | None
    arm: str | None


class CompletionCost(NamedTuple):
    """One recorded completion of an experiment: its arm, latency and token counts."""

    arm: str | None
    latency_s: float
    prompt_tokens: int
    completion_tokens: int


class VerdictCount(NamedTuple):
    """How many ``verdicts`` gave ``arm`` the ``outcome`` (win, loss, tie) against
    ``baseline_arm``."""

    arm: str
    baseline_arm: str
    outcome: str
    verdicts: int  # how many (``count`` would shadow tuple.count)


class FeedbackTally(NamedTuple):
    """Feedback grouped by an arm or a model: how many votes, their mean score."""

    key: str | None  # the arm (None: completions outside experiments) or the model
    votes: int
    mean_score: float | None
