"""The unit of ranker training data: one source text and its candidates, each with a score."""

from __future__ import annotations

from dataclasses import dataclass


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
