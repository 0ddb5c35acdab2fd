"""From a request to what its answer is made of: the adaptive policy's stages and strategy.

``select`` runs the ensemble's cascade stages in order (each a small fan-out, ranked; its top
candidate answers when the stage's ``accept`` rule trusts the ranking), then the ensemble's
own members with its ``strategy``:

* ``blend``: fan out (stopping early once ``early_stop`` candidates agree), rank, and send the
  top-k to the fuser, unless ``skip_fusion`` trusts the ranking: then its top candidate answers;
* ``hedged``: fan out and answer with the first valid candidate, cancelling the rest;
* ``vote``: fan out (stopping early once ``early_stop`` answers are the same) and answer with
  the most common normalised answer.

Every :class:`Selection` carries its :class:`~ensemble.types.PathReport`. A cascade stage that
fails (no candidate, every member overloaded) escalates to the next stage; the deadline does
not (it is the whole request's).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ensemble.adaptive.confidence import Confidence, measure
from ensemble.adaptive.stopping import EARLY_STOP, agreeing, earliest_valid, first_valid
from ensemble.adaptive.vote import majority
from ensemble.builder import Ensemble, Member, Stage
from ensemble.config import ConfidenceConfig
from ensemble.deadline import Deadline
from ensemble.errors import DeadlineExceeded, NoCandidatesError, OverloadedError, RankerError
from ensemble.fanout import FanoutResult, StopRule, fan_out
from ensemble.output_policy import rank_text, screen, text_order, tool_winner
from ensemble.rankers.base import Ranker
from ensemble.types import (
    AnswerPath,
    BlendRequest,
    Candidate,
    ChatMessage,
    PathReport,
    Ranking,
    Usage,
)


@dataclass(frozen=True)
class Selection:
    """What the stages hand to the answer: candidates, ranking, and how to answer."""

    fanout: FanoutResult  # the answering stage's; its candidates are the screened ones
    ranking: Ranking | None
    top: tuple[Candidate, ...]  # the text candidates to fuse, best first
    fanout_s: float  # every stage's fan-out together
    rank_s: float
    path: PathReport
    call: Candidate | None = None  # the tool call the ensemble answers with, if any
    answer: Candidate | None = None  # answers alone, unfused (a path other than fused)
    spent: tuple[tuple[str, Usage], ...] = ()  # earlier stages' (member label, usage)

    @property
    def usage(self) -> Usage:
        """Every member call's usage, earlier cascade stages included."""
        return sum((u for _, u in self.spent), self.fanout.usage)

    @property
    def member_usage(self) -> tuple[tuple[str, Usage], ...]:
        return (*self.spent, *self.fanout.member_usage)


async def select(ens: Ensemble, request: BlendRequest, deadline: Deadline) -> Selection:
    """Run the cascade stages, then the ensemble's strategy (see the module doc)."""
    spent: list[tuple[str, Usage]] = []
    escalated: list[str] = []
    fanout_s = rank_s = 0.0
    for index, stage in enumerate(ens.stages):
        try:
            chosen = await _stage(ens, stage, index, request, deadline)
        except DeadlineExceeded:
            raise
        except (NoCandidatesError, OverloadedError) as exc:
            escalated.append(f"stage {index}: failed: {type(exc).__name__}: {exc}")
            continue
        fanout_s, rank_s = fanout_s + chosen.fanout_s, rank_s + chosen.rank_s
        if chosen.path.path is AnswerPath.CASCADE:
            return _after(chosen, spent, escalated, fanout_s, rank_s)
        spent += chosen.fanout.member_usage  # paid for, though the stage did not answer
        escalated.append(f"stage {index}: {chosen.path.reason}")
    run = {"hedged": _hedged, "vote": _vote}.get(ens.cfg.strategy, _blend)
    chosen = await run(ens, request, deadline, len(ens.stages))
    return _after(chosen, spent, escalated, fanout_s + chosen.fanout_s, rank_s + chosen.rank_s)


def _after(chosen: Selection, spent: Sequence[tuple[str, Usage]], escalated: Sequence[str],
           fanout_s: float, rank_s: float) -> Selection:
    """``chosen`` with what the stages before it spent and why they did not answer."""
    path = replace(chosen.path, escalated=tuple(escalated))
    return replace(chosen, spent=tuple(spent), path=path, fanout_s=fanout_s, rank_s=rank_s)


async def _stage(ens: Ensemble, stage: Stage, index: int, request: BlendRequest,
                 deadline: Deadline) -> Selection:
    """One cascade stage: its path is ``cascade`` when ``accept`` trusts it, else ``fused``
    (meaning: escalate), with the reason."""
    result, fanout_s = await _gather(ens, stage.members, request, deadline, None, 1)
    ranking, rank_s = await _ranked(ens.ranker, request.messages, result, deadline)
    chosen = _ranked_selection(ens, result, ranking, fanout_s, rank_s, index)
    confidence = await _confidence(ens, stage.accept, request, result, ranking, deadline)
    reason = confidence.accepted_by(stage.accept)
    path = PathReport(AnswerPath.CASCADE if reason else AnswerPath.FUSED, index, False,
                      reason or confidence.describe(stage.accept), confidence.margin,
                      confidence.agreement)
    return replace(chosen, path=path, answer=_alone(chosen) if reason else None)


async def _blend(ens: Ensemble, request: BlendRequest, deadline: Deadline,
                 index: int) -> Selection:
    """The full fan-out, ranked; fused unless ``skip_fusion`` trusts the ranking."""
    stop = None
    if ens.cfg.early_stop is not None:
        stop = agreeing(ens.cfg.early_stop, request.params, by_vote=False,
                        similarity=ens.similarity, messages=request.messages)
    result, fanout_s = await _gather(ens, None, request, deadline, stop, ens.cfg.min_candidates)
    ranking, rank_s = await _ranked(ens.ranker, request.messages, result, deadline)
    chosen = _ranked_selection(ens, result, ranking, fanout_s, rank_s, index)
    rule = ens.cfg.skip_fusion
    fused = PathReport(AnswerPath.FUSED, index, True,
                       f"fused the top {len(chosen.top)} of {len(result.candidates)}",
                       early_stop=_early(result))
    if rule is None or chosen.call is not None:
        return replace(chosen, path=fused)
    confidence = await _confidence(ens, rule, request, result, ranking, deadline)
    measured = replace(fused, margin=confidence.margin, agreement=confidence.agreement)
    reason = confidence.accepted_by(rule)
    if reason is None:
        return replace(chosen, path=replace(measured, reason=f"{fused.reason}: "
                                                              f"{confidence.describe(rule)}"))
    path = replace(measured, path=AnswerPath.SKIP_FUSION, fused=False, reason=reason)
    return replace(chosen, path=path, answer=_alone(chosen))


async def _hedged(ens: Ensemble, request: BlendRequest, deadline: Deadline,
                  index: int) -> Selection:
    """The first valid candidate answers; the members still running are cancelled."""
    params = request.params
    result, fanout_s = await _gather(ens, None, request, deadline, first_valid(params),
                                     ens.cfg.min_candidates)
    winner = earliest_valid(result.candidates, params)
    reason = "first valid answer"
    if winner is None:  # every candidate was cut by max_tokens: the first of them
        winner = min(result.candidates, key=lambda c: c.latency_s)
        reason = "no finished answer; the first to arrive"
    path = PathReport(AnswerPath.HEDGED, index, False,
                      f"{reason}: {winner.member} after {winner.latency_s:.3g}s")
    return Selection(result, None, (winner,), fanout_s, 0.0, path, answer=winner)


async def _vote(ens: Ensemble, request: BlendRequest, deadline: Deadline,
                index: int) -> Selection:
    """The most common normalised answer (``ensemble.adaptive.vote``); nothing is ranked."""
    stop = None
    if ens.cfg.early_stop is not None:
        stop = agreeing(ens.cfg.early_stop, request.params, by_vote=True, similarity=None,
                        messages=request.messages)
    result, fanout_s = await _gather(ens, None, request, deadline, stop, ens.cfg.min_candidates)
    vote = majority(result.candidates)
    path = PathReport(AnswerPath.VOTE, index, False, vote.reason, early_stop=_early(result))
    return Selection(result, None, (vote.winner,), fanout_s, 0.0, path, answer=vote.winner)


async def _gather(ens: Ensemble, members: Sequence[Member] | None, request: BlendRequest,
                  deadline: Deadline, stop: StopRule | None,
                  min_candidates: int) -> tuple[FanoutResult, float]:
    """Fan out to ``members`` (default: the ensemble's) and screen what came back."""
    started = time.perf_counter()
    result = await fan_out(request.messages, ens.fanout_members(request.params, members),
                           min_candidates=min_candidates, deadline_s=deadline.left_s(),
                           quorum_wait_s=ens.cfg.quorum_wait_s, stop=stop)
    screened = screen(result.candidates, request.params)
    result = replace(result, candidates=screened.candidates,
                     failures=(*result.failures, *screened.failures))
    if not result.candidates:
        raise NoCandidatesError("no candidate satisfied the request's tools or "
                                "response_format", result.failures)
    return result, time.perf_counter() - started


async def _ranked(ranker: Ranker, messages: Sequence[ChatMessage], result: FanoutResult,
                  deadline: Deadline) -> tuple[Ranking | None, float]:
    """The ranking of ``result``'s candidates (None for one candidate, or, with
    ``on_deadline: best_candidate``, when the deadline passed first), and its time."""
    started = time.perf_counter()
    texts = [rank_text(c) for c in result.candidates]
    ranking = None
    if len(texts) > 1:
        try:
            async with deadline.bound("ranking"):
                ranking = await rank(ranker, messages, texts)
        except DeadlineExceeded:
            if not deadline.fallback:
                raise
            # unranked: the members' order, as the ``none`` ranker would give
    return ranking, time.perf_counter() - started


def _ranked_selection(ens: Ensemble, result: FanoutResult, ranking: Ranking | None,
                      fanout_s: float, rank_s: float, index: int) -> Selection:
    call = tool_winner(result.candidates, ranking, ens.cfg.tools)
    top = text_order(result.candidates, ranking)[: ens.cfg.top_k]
    return Selection(result, ranking, tuple(top), fanout_s, rank_s,
                     PathReport(AnswerPath.FUSED, index), call)


async def _confidence(ens: Ensemble, rule: ConfidenceConfig, request: BlendRequest,
                      result: FanoutResult, ranking: Ranking | None,
                      deadline: Deadline) -> Confidence:
    texts = [rank_text(c) for c in result.candidates]
    async with deadline.bound("ranking"):
        return await measure(rule, ens.ranker, ens.similarity, request.messages, texts,
                             ranking)


def _alone(chosen: Selection) -> Candidate | None:
    """The candidate that answers alone: the winning call is answered as a call already."""
    return None if chosen.call is not None or not chosen.top else chosen.top[0]


def _early(result: FanoutResult) -> bool:
    return any(f.error_type == EARLY_STOP for f in result.failures)


async def rank(ranker: Ranker, messages: Sequence[ChatMessage], texts: list[str]) -> Ranking:
    """``ranker``'s ranking of ``texts``; any failure is a ``RankerError``."""
    try:
        ranking = await ranker.rank(messages, texts)
    except (RankerError, OverloadedError):
        raise
    except Exception as exc:  # the gateway maps RankerError to a clean 500
        raise RankerError(f"ranker {ranker.name}: {type(exc).__name__}: {exc}") from exc
    if len(ranking.ranks) != len(texts) or len(ranking.scores) != len(texts):
        raise RankerError(f"ranker {ranker.name} ranked {len(ranking.ranks)} of {len(texts)} "
                          f"candidates")
    return ranking
