"""Scores -> competition ranks ("1224" ranking), shared by every ranker."""

from __future__ import annotations

from collections.abc import Sequence


def competition_ranks(scores: Sequence[float]) -> list[int]:
    """Rank 1 = highest score; ties share the best rank and leave a gap after them.

    >>> competition_ranks([1.0, 2.0, 2.0, 0.0])
    [3, 1, 1, 4]
    """
    return [1 + sum(1 for other in scores if other > score) for score in scores]
