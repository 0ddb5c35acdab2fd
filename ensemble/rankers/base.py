"""The ``Ranker`` protocol, and ``Comparison``: what a pairwise ranker's ``compare`` returns
(``/v1/compare`` reads it from PairRM and from the LLM judge alike)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ensemble.types import ChatMessage, Ranking


@runtime_checkable
class Ranker(Protocol):
    """Scores candidate answers to a conversation. Raises ``RankerError`` on model failure."""

    name: str

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        """Rank ``candidates`` as replies to ``messages`` (higher score / lower rank = better)."""
        ...

    async def aclose(self) -> None: ...


def scores_both_orders(ranker: Ranker) -> bool:
    """Whether ``ranker``'s scores do not depend on the candidates' order: pointwise scorers,
    and pairwise ones that already judge every ordered pair (PairRM, the pairwise LLM judge).
    A judge then needs one call for an order-free verdict instead of two. Rankers opt in with
    the attribute ``order_invariant = True``; any other ranker is asked in both orders."""
    return bool(getattr(ranker, "order_invariant", False))


@dataclass(frozen=True)
class Comparison:
    """Both orders of one pair. ``logit_ab`` > 0: A better with A on the left."""

    logit_ab: float  # A left, B right
    logit_ba: float  # B left, A right (> 0 means B better)

    @property
    def combined(self) -> float:
        """logit_ab - logit_ba: Blender.compare's default "[A,B]+[B,A]" value (position bias
        cancels)."""
        return self.logit_ab - self.logit_ba

    @property
    def prob_a_better(self) -> float:
        """sigmoid of the mean of the two oriented logits, i.e. sigmoid(combined / 2)."""
        return 1.0 / (1.0 + math.exp(-self.combined / 2.0))
