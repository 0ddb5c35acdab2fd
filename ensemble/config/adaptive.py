"""The parts of an ensemble's adaptive policy: when one candidate may answer without
fusing, the acceptance rule of cascade stages (``CascadeStageConfig`` is in models.py, beside
the members it lists), early stopping, and the hedged / vote strategies.

Every field defaults to off, so an ensemble without them blends exactly as before (fan out to
every member, rank, fuse the top-k). See ``ensemble/adaptive/`` for how each is applied and
README "Adaptive ensembling" for the thresholds' scales.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ensemble.config.base import StrictModel


class ConfidenceConfig(StrictModel):
    """When the ranked candidates are trusted as they are: the top candidate answers alone
    when EITHER threshold is reached (an unset one never is).

    * ``margin``: the ranker's score of rank 1 minus rank 2, in the ranker's own units
      (consensus: cosine similarity; PairRM ``full``: mean logit; ``max_wins``: pairs won;
      reward model: reward; LLM judge: log-odds). Not allowed with ``ranker: none``.
    * ``agreement``: the top candidate's mean cosine similarity to the other candidates,
      the consensus ranker's own score (``ensemble.rankers.similarity``).

    Either needs at least two candidates: with one there is no evidence, and it is fused.
    """

    margin: float | None = Field(None, ge=0)
    agreement: float | None = Field(None, ge=-1, le=1)

    @model_validator(mode="after")
    def _one_threshold(self) -> ConfidenceConfig:
        if self.margin is None and self.agreement is None:
            raise ValueError("set margin, agreement or both")
        return self


class EarlyStopConfig(StrictModel):
    """Stop waiting for members once ``agree`` candidates agree: each of them at least
    ``similarity`` (cosine, consensus embeddings) to one of them, or, with ``strategy:
    vote``, the same normalised answer. Members still running are cut (``EarlyStop``)."""

    agree: int = Field(ge=2)
    similarity: float = Field(0.9, ge=-1, le=1)


Strategy = Literal["blend", "hedged", "vote"]


def strategy_problems(strategy: Strategy, *, skip_fusion: bool, cascade: bool,
                      early_stop: bool) -> list[str]:
    """The policy fields ``strategy`` cannot use; [] when the combination is fine."""
    if strategy == "hedged":
        unused = {"skip_fusion": skip_fusion, "cascade": cascade, "early_stop": early_stop}
        why = "answers with the first valid candidate"
    elif strategy == "vote":
        unused = {"skip_fusion": skip_fusion, "cascade": cascade}
        why = "answers with the most common answer and never fuses"
    else:
        return []
    return [f"strategy {strategy} {why}: {name} does not apply"
            for name, on in unused.items() if on]
