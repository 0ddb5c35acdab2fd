"""Fan-out stop rules (``ensemble.fanout.StopRule``): when the candidates so far are enough.

* :func:`agreeing` (``early_stop``, adaptive best-of-n / early-stopping self-consistency):
  stop once ``agree`` candidates agree: with ``strategy: blend`` a candidate and ``agree - 1``
  others at cosine similarity >= ``similarity`` to it (the consensus similarity); with
  ``strategy: vote`` ``agree`` candidates with the same normalised answer.
* :func:`first_valid` (``strategy: hedged``): stop at the first candidate that is valid
  (:func:`is_valid`): a finished answer (not cut by ``max_tokens``) that passes the request's
  tools / ``response_format`` screening. Empty answers never become candidates.

A rule only sees candidates; the members it cuts are cancelled and reported by the fan-out.
"""

from __future__ import annotations

from collections.abc import Sequence

from ensemble.adaptive.vote import most_votes
from ensemble.config import EarlyStopConfig
from ensemble.fanout import StopRule
from ensemble.output_policy import candidate_error, rank_text
from ensemble.rankers.similarity import SimilaritySource, largest_agreeing
from ensemble.types import Candidate, ChatMessage, SamplingParams

EARLY_STOP = "EarlyStop"  # MemberFailure.error_type of a member cut by early_stop
HEDGE_CUT = "HedgeCut"  # MemberFailure.error_type of a member cut by a hedged answer


def agreeing(cfg: EarlyStopConfig, params: SamplingParams, *, by_vote: bool,
             similarity: SimilaritySource | None,
             messages: Sequence[ChatMessage]) -> StopRule:
    """Stop once ``cfg.agree`` valid candidates agree (see the module doc)."""

    async def enough(arrived: tuple[Candidate, ...]) -> bool:
        valid = [c for c in arrived if candidate_error(c, params) is None]
        if len(valid) < cfg.agree:
            return False
        if by_vote:
            return most_votes(valid) >= cfg.agree
        assert similarity is not None  # the builder provides one whenever early_stop is set
        matrix = await similarity.similarities(messages, [rank_text(c) for c in valid])
        return len(largest_agreeing(matrix, cfg.similarity)) >= cfg.agree

    how = "the same answer" if by_vote else f"similarity >= {cfg.similarity:g}"
    return StopRule(enough, EARLY_STOP,
                    f"cut: {cfg.agree} candidates already agreed ({how}; early_stop)")


def is_valid(candidate: Candidate, params: SamplingParams) -> bool:
    """Finished (not cut by a token limit) and within the request's tools / format rules."""
    return candidate.finish_reason != "length" and candidate_error(candidate, params) is None


def first_valid(params: SamplingParams) -> StopRule:
    """Stop at the first valid candidate (``strategy: hedged``)."""

    async def enough(arrived: tuple[Candidate, ...]) -> bool:
        return any(is_valid(c, params) for c in arrived)

    return StopRule(enough, HEDGE_CUT, "cut: another member already gave a valid answer "
                                       "(strategy: hedged)")


def earliest_valid(candidates: Sequence[Candidate], params: SamplingParams) -> Candidate | None:
    """The valid candidate that arrived first (lowest latency; members' order on a tie)."""
    valid = [c for c in candidates if is_valid(c, params)]
    return min(valid, key=lambda c: c.latency_s) if valid else None
