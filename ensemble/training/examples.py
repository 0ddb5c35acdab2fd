"""The unit of ranker training data: one source text and its candidates, each with a score."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True)
class RankingExample:
    """Candidates for one source; a higher score is better, equal scores are a tie.

    ``source`` and ``candidates`` are the texts PairRM sees (already rendered by
    :func:`ensemble.rankers.pairrm.chat_prompt` where they came from a chat). ``origin`` names
    the data set, for the metrics log and the held-out split.
    """

    source: str
    candidates: tuple[str, ...]
    scores: tuple[float, ...]
    origin: str = ""

    def __post_init__(self) -> None:
        if len(self.candidates) != len(self.scores):
            raise ValueError("a RankingExample needs one score per candidate")

    @classmethod
    def pair(cls, source: str, chosen: str, rejected: str, origin: str = "") -> RankingExample:
        """A preference pair: ``chosen`` (score 1) over ``rejected`` (score 0)."""
        return cls(source, (chosen, rejected), (1.0, 0.0), origin)

    @property
    def decisive(self) -> bool:
        """True when some two candidates differ in score (else no pair carries a gradient)."""
        return len(set(self.scores)) > 1


def split_held_out(items: Sequence[Item], fraction: float, seed: int,
                   ) -> tuple[list[Item], list[Item]]:
    """(train, held-out): a seeded shuffle, the first ``fraction`` held out, each part kept
    in file order."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * fraction)
    return [items[i] for i in sorted(order[cut:])], [items[i] for i in sorted(order[:cut])]
