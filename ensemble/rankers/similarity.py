"""How much candidates agree: the consensus ranker's one similarity, read three ways.

A :class:`SimilaritySource` (the consensus ranker) gives the symmetric matrix of cosine
similarities between candidate embeddings. From it come the consensus (MBR) scores, each
candidate's mean similarity to the others (:func:`mbr_scores`), which the adaptive policies
call a candidate's *agreement*, and the largest group of candidates close to one of them
(:func:`largest_agreeing`), which early stopping counts. Torch-free: the embedding lives in
``ensemble.rankers.consensus``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ensemble.types import ChatMessage

SimilarityMatrix = tuple[tuple[float, ...], ...]  # [i][j] = [j][i]; the diagonal is 1
DIGITS = 6  # scores are rounded: float noise must not break ties between equal texts


@runtime_checkable
class SimilaritySource(Protocol):
    """Something that can say how similar candidate texts are (cosine, in [-1, 1])."""

    name: str

    async def similarities(
        self, messages: Sequence[ChatMessage], candidates: Sequence[str]
    ) -> SimilarityMatrix: ...


def mbr_scores(matrix: SimilarityMatrix) -> tuple[float, ...]:
    """Each candidate's mean similarity to every OTHER candidate, rounded to ``DIGITS``.

    ``math.fsum`` is exact, so two candidates with the same similarities (equal texts) get
    bit-equal scores whatever order the values come in. One candidate alone scores 0.
    """
    count = len(matrix)
    if count < 2:
        return (0.0,) * count
    return tuple(
        round(math.fsum(row[j] for j in range(count) if j != i) / (count - 1), DIGITS)
        for i, row in enumerate(matrix)
    )


def largest_agreeing(matrix: SimilarityMatrix, threshold: float) -> tuple[int, ...]:
    """The largest group made of one candidate and every other at least ``threshold``
    similar to it, as indices; the earliest such centre wins a tie (deterministic)."""
    best: tuple[int, ...] = ()
    for i, row in enumerate(matrix):
        group = tuple(j for j, value in enumerate(row) if j == i or value >= threshold)
        if len(group) > len(best):
            best = group
    return best
