"""A pairwise verdict from any ranker: is answer B better than answer A?

A ranker whose scores already ignore the order (``scores_both_orders``: pointwise scorers, and
PairRM and the pairwise LLM judge, which compare both orders of every pair themselves) is asked
once. Any other is asked in both orders ([A, B] and [B, A]) and each answer's two scores are
averaged, which cancels its position bias. B wins when its mean score is
above A's by more than ``tie_margin``, loses when below by more, and ties otherwise: the margin
(and rounding to 6 digits before comparing) keeps float noise from ever deciding a verdict.

Score scales differ between rankers (PairRM: logits; consensus: mean cosine similarity, which
for two answers is the same for both, so every verdict is a tie), so ``tie_margin`` is set per
experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ensemble.experiments.events import Outcome
from ensemble.rankers.base import Ranker, scores_both_orders
from ensemble.types import ChatMessage

_DIGITS = 6


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome  # from B's side
    score_a: float
    score_b: float


def decide(score_a: float, score_b: float, tie_margin: float) -> Outcome:
    difference = round(score_b - score_a, _DIGITS)
    if difference > tie_margin:
        return "win"
    if difference < -tie_margin:
        return "loss"
    return "tie"


class PairwiseJudge:
    def __init__(self, ranker: Ranker, tie_margin: float) -> None:
        self.ranker = ranker
        self.tie_margin = tie_margin
        self.name = ranker.name

    async def judge(self, messages: Sequence[ChatMessage], a: str, b: str) -> Verdict:
        """Raises the ranker's ``RankerError`` when it fails."""
        forward = await self.ranker.rank(messages, [a, b])
        score_a, score_b = forward.scores
        if not scores_both_orders(self.ranker):
            backward = await self.ranker.rank(messages, [b, a])
            score_a = (score_a + backward.scores[1]) / 2
            score_b = (score_b + backward.scores[0]) / 2
        return Verdict(decide(score_a, score_b, self.tie_margin), score_a, score_b)
