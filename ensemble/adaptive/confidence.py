"""How sure the ranked candidates are: the ranker's margin and the candidates' agreement.

* **margin**: the score of rank 1 minus the score of rank 2, in the ranker's own units
  (consensus: cosine; PairRM ``full``: mean logit; ``max_wins``: pairs won; reward model:
  reward; LLM judge: log-odds). Equal top scores give 0.
* **agreement**: the top-ranked candidate's mean cosine similarity to the others, i.e. its
  consensus (MBR) score. With a consensus ranker that is its ranking score, read as it is;
  with any other ranker the similarity source (the consensus ranker of ``similarity``) is
  asked for the matrix.

Both need two candidates or more; with one there is no evidence (None), and no rule accepts.
A threshold is reached at ``>=``: configure thresholds clearly away from observed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from ensemble.config import ConfidenceConfig
from ensemble.rankers.base import Ranker
from ensemble.rankers.similarity import SimilaritySource, mbr_scores
from ensemble.types import ChatMessage, Ranking


@dataclass(frozen=True)
class Confidence:
    """The measures a rule asked for (None: not asked, or fewer than two candidates)."""

    margin: float | None = None
    agreement: float | None = None

    def accepted_by(self, rule: ConfidenceConfig) -> str | None:
        """Why ``rule`` trusts these candidates, or None when it does not."""
        if rule.margin is not None and self.margin is not None and self.margin >= rule.margin:
            return f"margin {self.margin:.4g} >= {rule.margin:g}"
        if rule.agreement is not None and self.agreement is not None \
                and self.agreement >= rule.agreement:
            return f"agreement {self.agreement:.4g} >= {rule.agreement:g}"
        return None

    def describe(self, rule: ConfidenceConfig) -> str:
        """Why ``rule`` does not trust them, for the report."""
        parts = []
        if rule.margin is not None:
            parts.append(f"margin {_shown(self.margin)} < {rule.margin:g}")
        if rule.agreement is not None:
            parts.append(f"agreement {_shown(self.agreement)} < {rule.agreement:g}")
        return ", ".join(parts)


def margin(ranking: Ranking | None) -> float | None:
    """Score of rank 1 minus score of rank 2; None with fewer than two candidates."""
    if ranking is None or len(ranking.scores) < 2:
        return None
    first, second = sorted(ranking.scores, reverse=True)[:2]
    return first - second


async def measure(
    rule: ConfidenceConfig, ranker: Ranker, similarity: SimilaritySource | None,
    messages: Sequence[ChatMessage], texts: Sequence[str], ranking: Ranking | None,
) -> Confidence:
    """The margin and agreement ``rule`` needs (only those) for ranked ``texts``."""
    if ranking is None or len(texts) < 2:
        return Confidence()
    agreement = None
    if rule.agreement is not None:
        top = ranking.order()[0]
        # the shared consensus ranker: its score already is the agreement
        if similarity is not None and cast(object, ranker) is similarity:
            agreement = ranking.scores[top]
        elif similarity is not None:
            agreement = mbr_scores(await similarity.similarities(messages, texts))[top]
    return Confidence(margin(ranking) if rule.margin is not None else None, agreement)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
