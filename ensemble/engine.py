"""``BlendEngine``: the one object the HTTP gateway talks to.

It serves two kinds of model (``models()``):

* an **ensemble**: fan out to its members (``ensemble.fanout``), rank the candidates (skipped
  when only one arrived), keep the ``top_k`` best and fuse them into one answer. ``n`` > 1
  means n independent fuse calls over the same ranking, run concurrently; choice i is the
  i-th fused answer. The :class:`BlendReport` (candidates, ranking, failures, fuser used,
  stage timings) is always filled for ensembles.
* a **single** model: a pure pass-through to one backend (``complete`` with ``n``, or its real
  token stream); no report.

Usage of an ensemble answer = the usage of every member call that answered + the usage the
fuser's backend reported (a model-free fuser adds nothing; the ranker's encoder is not
counted, it produces no tokens). The report breaks it down (``BlendReport.usage``: one
:class:`UsagePart` per member that reported usage, then the fuser's).

Errors: a failing member is recorded in the report; too few candidates raises
``NoCandidatesError``/``DeadlineExceeded`` (from the fan-out); a ranker or fuser failing at run
time raises ``RankerError``/``FuserError``; ``OverloadedError`` passes through. A failure
during ``stream`` is raised from the generator. Cancelling the caller (or closing the stream)
cancels every upstream call still running.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

from ensemble.backends.base import Backend
from ensemble.backends.openai_wire import merge_logprobs
from ensemble.builder import EngineParts, Ensemble, build_parts, member_labels
from ensemble.concurrency import closing, gather_or_cancel
from ensemble.config import BlendgateConfig, RankerConfig
from ensemble.deadline import Deadline, within
from ensemble.errors import (
    DeadlineExceeded,
    FuserError,
    InvalidParamsError,
    NoCandidatesError,
    OverloadedError,
    RankerError,
    UnknownModelError,
)
from ensemble.fallbacks import Fallback
from ensemble.fanout import FanoutResult, fan_out
from ensemble.fusers.base import Fuser
from ensemble.fusers.factory import FuserBuilder, build_fuser
from ensemble.output_policy import (
    answer_error,
    rank_text,
    screen,
    text_order,
    tool_winner,
    wants_json,
)
from ensemble.rankers.base import Ranker
from ensemble.rankers.factory import RankerBuilder, build_ranker
from ensemble.stream_merge import merge_streams
from ensemble.tasks import is_background_task
from ensemble.types import (
    BlendReport,
    BlendRequest,
    BlendResult,
    Candidate,
    ChatMessage,
    Choice,
    FuseStream,
    Ranking,
    SamplingParams,
    ServedModel,
    StageTimings,
    StreamEnd,
    TextDelta,
    ToolCall,
    Usage,
    UsagePart,
)

__all__ = ["BlendEngine", "member_labels"]


@dataclass(frozen=True)
class _Selection:
    """What fan-out and ranking hand to the fuse stage."""

    fanout: FanoutResult  # its candidates are the screened ones (see ensemble.output_policy)
    ranking: Ranking | None
    top: tuple[Candidate, ...]  # the text candidates to fuse, best first
    fanout_s: float
    rank_s: float
    call: Candidate | None = None  # the tool call the ensemble answers with, if any


@dataclass(frozen=True)
class _Fused:
    text: str
    finish_reason: str | None
    usage: Usage
    fuser: str
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Mapping[str, Any] | None = None


class BlendEngine:
    """Build with ``await BlendEngine.from_config(cfg)``; close with ``aclose()`` (or use it as an
    async context manager)."""

    def __init__(self, parts: EngineParts) -> None:
        self._parts = parts
        self._ensembles = parts.ensembles
        self._singles = parts.singles

    @classmethod
    async def from_config(
        cls,
        config: BlendgateConfig,
        *,
        backends: Mapping[str, Backend] | None = None,
        ranker_builder: RankerBuilder = build_ranker,
        fuser_builder: FuserBuilder = build_fuser,
    ) -> BlendEngine:
        """Build backends, rankers (one per distinct config) and fusers (``ensemble.builder``).

        ``backends`` injects ready backends (tests, embedding); the engine then does not close
        them. ``ranker_builder`` / ``fuser_builder`` replace the factories (the Ray Serve
        application builds clients of its model deployments there). Anything built before a
        failure is closed again before the error propagates.
        """
        return cls(await build_parts(config, backends=backends, ranker_builder=ranker_builder,
                                     fuser_builder=fuser_builder))

    def models(self) -> list[ServedModel]:
        served = [
            ServedModel(mid, "ensemble", tuple(dict.fromkeys(m.cfg.backend for m in e.members)))
            for mid, e in self._ensembles.items()
        ]
        served += [ServedModel(mid, "single", (b.name,)) for mid, b in self._singles.items()]
        return served

    def service_ranker(self) -> Ranker | None:
        return self._parts.service_ranker

    async def ranker(self, cfg: RankerConfig) -> Ranker:
        """The engine's ranker for ``cfg``, built on first use and shared with its ensembles
        (an A/B judge, ``blendgate eval``); the engine closes it."""
        return await self._parts.rankers.get(cfg)

    def service_fuser(self) -> Fuser | None:
        """The fuser behind ``POST /v1/fuse``: ``fuse_service``, else the first ensemble's."""
        return self._parts.service_fuser

    async def aclose(self) -> None:
        await self._parts.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ serving

    async def complete(self, request: BlendRequest) -> BlendResult:
        target, request = self._lookup(request)
        if isinstance(target, Ensemble):
            return await self._complete_ensemble(target, request)
        async with within(self._single_deadline(request.model), "waiting for the backend"):
            completions = await target.complete(request.messages, request.params, request.n)
        usage = sum((c.usage for c in completions if c.usage is not None), Usage())
        choices = [Choice(i, c.text, c.finish_reason, c.tool_calls, c.logprobs, c.refusal)
                   for i, c in enumerate(completions)]
        return BlendResult(request.model, choices, usage)

    async def stream(
        self, request: BlendRequest
    ) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        """Deltas (``index`` = choice) as they are produced, then one :class:`StreamEnd`.

        An async generator: ``aclose()`` it (or cancel its consumer) to stop every upstream call.
        """
        target, request = self._lookup(request)
        if isinstance(target, Ensemble):
            async with closing(self._stream_ensemble(target, request)) as events:
                async for event in events:
                    yield event
            return
        usage = Usage()
        deadline = self._single_deadline(request.model)
        async with closing(target.stream(request.messages, request.params, request.n)) as deltas:
            while True:
                # each wait on its own, never across the yield (see Deadline)
                async with within(deadline, "streaming from the backend"):
                    delta = await anext(deltas, None)
                if delta is None:
                    break
                usage += delta.usage or Usage()
                yield delta
        yield StreamEnd(usage, None)

    def _single_deadline(self, model: str) -> Deadline | None:
        """A pass-through model's ``deadline_s``, started now; None when it has none."""
        seconds = self._parts.single_deadlines.get(model)
        return None if seconds is None else Deadline.after(seconds)

    def _lookup(self, request: BlendRequest) -> tuple[Ensemble | Backend, BlendRequest]:
        """What serves ``request``, and the request as it is served (a task's may be capped)."""
        if request.n < 1:
            raise InvalidParamsError(f"n must be at least 1, got {request.n}", param="n")
        found = self._ensembles.get(request.model) or self._singles.get(request.model)
        if found is None:
            raise UnknownModelError(request.model)
        tasks = found.cfg.tasks if isinstance(found, Ensemble) else None
        if isinstance(found, Ensemble) and found.task_backend is not None and \
                tasks is not None and is_background_task(request, tasks):
            # A title/tag/follow-up: no fan-out for it, and a short answer.
            cap = tasks.max_tokens
            if cap is not None:
                tokens = min(request.params.max_tokens or cap, cap)
                request = replace(request, params=replace(request.params, max_tokens=tokens))
            return found.task_backend, request
        fuser = found.cfg.fuser.type if isinstance(found, Ensemble) else None
        if request.params.logprobs and fuser not in (None, "llm", "none"):
            # The text comes from the fuser (or its member); only an LLM or a member has them.
            raise InvalidParamsError(
                f"logprobs are not available from `{request.model}`: its {fuser} fuser "
                "produces text without token log-probabilities.", param="logprobs")
        return found, request

    # ------------------------------------------------------------------ ensembles

    async def _complete_ensemble(self, ens: Ensemble, request: BlendRequest) -> BlendResult:
        started = time.perf_counter()
        deadline = Deadline.start(ens.cfg)
        chosen = await self._select(ens, request, deadline)
        fuse_started = time.perf_counter()
        fused = await _answer(ens, request, chosen, deadline)
        choices = [Choice(i, f.text, f.finish_reason, f.tool_calls, f.logprobs)
                   for i, f in enumerate(fused)]
        fuse_usage = sum((f.usage for f in fused), Usage())
        usage = chosen.fanout.usage + fuse_usage
        timings = _timings(chosen, started, fuse_started)
        report = _report(chosen, fused[0].fuser, timings, fuse_usage)
        return BlendResult(request.model, choices, usage, report)

    async def _stream_ensemble(
        self, ens: Ensemble, request: BlendRequest
    ) -> AsyncIterator[TextDelta | StreamEnd]:
        started = time.perf_counter()
        deadline = Deadline.start(ens.cfg)
        chosen = await self._select(ens, request, deadline)
        # A tool call, or JSON that is checked before it is sent: one whole answer.
        whole = chosen.call is not None or wants_json(request.params)
        events = (_stream_whole if whole else _stream_fused)(ens, request, chosen, deadline,
                                                             started)
        async with closing(events) as deltas:
            async for delta in deltas:
                yield delta

    async def _select(
        self, ens: Ensemble, request: BlendRequest, deadline: Deadline
    ) -> _Selection:
        started = time.perf_counter()
        members = ens.fanout_members(request.params)
        result = await fan_out(request.messages, members, min_candidates=ens.cfg.min_candidates,
                               deadline_s=deadline.left_s(), quorum_wait_s=ens.cfg.quorum_wait_s)
        fanned_out = time.perf_counter()
        screened = screen(result.candidates, request.params)
        result = replace(result, candidates=screened.candidates,
                         failures=(*result.failures, *screened.failures))
        if not result.candidates:
            raise NoCandidatesError("no candidate satisfied the request's tools or "
                                    "response_format", result.failures)
        texts = [rank_text(c) for c in result.candidates]
        ranking = None
        if len(texts) > 1:
            try:
                async with deadline.bound("ranking"):
                    ranking = await _rank(ens.ranker, request.messages, texts)
            except DeadlineExceeded:
                if not deadline.fallback:
                    raise
                # unranked: the members' order, as the ``none`` ranker would give
        call = tool_winner(result.candidates, ranking, ens.cfg.tools)
        top = text_order(result.candidates, ranking)[: ens.cfg.top_k]
        return _Selection(result, ranking, tuple(top), fanned_out - started,
                          time.perf_counter() - fanned_out, call)



# ---------------------------------------------------------------------- helpers


def _timings(chosen: _Selection, started: float, fuse_started: float) -> StageTimings:
    """The stage timings of an answer finished now."""
    done = time.perf_counter()
    return StageTimings(chosen.fanout_s, chosen.rank_s, done - fuse_started, done - started)


async def _stream_whole(
    ens: Ensemble, request: BlendRequest, chosen: _Selection, deadline: Deadline,
    started: float,
) -> AsyncIterator[TextDelta | StreamEnd]:
    """The ``n`` whole answers of ``_answer``, one delta each, then the end."""
    fuse_started = time.perf_counter()
    fused = await _answer(ens, request, chosen, deadline)
    fuse_usage = Usage()
    for choice, answer in enumerate(fused):
        fuse_usage += answer.usage
        yield TextDelta(answer.text, choice, answer.finish_reason,
                        tool_calls=_indexed(answer.tool_calls), logprobs=answer.logprobs)
    yield StreamEnd(chosen.fanout.usage + fuse_usage,
                    _report(chosen, fused[0].fuser, _timings(chosen, started, fuse_started),
                            fuse_usage))


async def _stream_fused(
    ens: Ensemble, request: BlendRequest, chosen: _Selection, deadline: Deadline,
    started: float,
) -> AsyncIterator[TextDelta | StreamEnd]:
    """``n`` fuse streams merged as their tokens come, then the end. When the deadline passes
    before the first token and ``on_deadline`` is ``best_candidate``, the best candidate."""
    fuse_started = time.perf_counter()
    fuse_usage = Usage()
    fuser = Fallback.DEADLINE.label()
    sent = False
    params = request.params.without_tools()
    try:
        async with deadline.bound("fusing"):
            streams = await gather_or_cancel([
                _start_fuse(ens.fuser, request.messages, _texts(chosen.top), params)
                for _ in range(request.n)
            ])
        fuser = streams[0].fuser
        async with closing(merge_streams(streams, deadline)) as merged:
            async for choice, delta in merged:
                fuse_usage += delta.usage or Usage()
                sent = True
                yield replace(delta, index=choice)
    except DeadlineExceeded:
        if sent or not deadline.fallback:
            raise  # mid-stream: the gateway sends one error event, then [DONE]
        fuser = Fallback.DEADLINE.label()
        best = chosen.top[0]
        for choice in range(request.n):
            yield TextDelta(best.text, choice, "stop", logprobs=best.logprobs)
    yield StreamEnd(chosen.fanout.usage + fuse_usage,
                    _report(chosen, fuser, _timings(chosen, started, fuse_started), fuse_usage))


async def _rank(ranker: Ranker, messages: Sequence[ChatMessage], texts: list[str]) -> Ranking:
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


async def _start_fuse(
    fuser: Fuser, messages: Sequence[ChatMessage], top: Sequence[str], params: SamplingParams
) -> FuseStream:
    try:
        return await fuser.fuse(messages, top, params)
    except (FuserError, OverloadedError):
        raise
    except Exception as exc:  # the gateway maps FuserError to a clean 500
        raise FuserError(f"fuser {fuser.name}: {type(exc).__name__}: {exc}") from exc


async def _answer(
    ens: Ensemble, request: BlendRequest, chosen: _Selection, deadline: Deadline
) -> list[_Fused]:
    """The ``n`` whole answers: the winning tool call, or the fused text (see output_policy).

    With a JSON ``response_format`` only an ``llm`` fuser (constrained by its backend) fuses;
    others fall back to the best candidate. A fused answer that breaks the format is
    replaced by the best candidate too, and ``fuser`` in the report says so.
    """
    if chosen.call is not None:
        call = chosen.call
        return [_Fused("", "tool_calls", Usage(), Fallback.TOOL_CALL.label(), call.tool_calls,
                       call.logprobs)] * request.n
    best = chosen.top[0]
    selected = _Fused(best.text, best.finish_reason or "stop", Usage(), "none",
                      logprobs=best.logprobs)
    params = request.params.without_tools()
    json_mode = wants_json(params)
    if json_mode and ens.cfg.fuser.type != "llm":
        kind = ens.cfg.fuser.type
        label = "none" if kind == "none" else Fallback.FORMAT_UNSUPPORTED.label(subject=kind)
        return [replace(selected, fuser=label)] * request.n
    try:
        async with deadline.bound("fusing"):
            fused = await gather_or_cancel([
                _fuse_text(ens.fuser, request.messages, _texts(chosen.top), params)
                for _ in range(request.n)
            ])
    except DeadlineExceeded:
        if not deadline.fallback:
            raise
        return [replace(selected, fuser=Fallback.DEADLINE.label())] * request.n
    return _format_checked(fused, selected, params) if json_mode else fused


def _format_checked(
    fused: Sequence[_Fused], selected: _Fused, params: SamplingParams
) -> list[_Fused]:
    """Each fused answer, or the best candidate where the answer breaks ``response_format``."""
    kind = str((params.response_format or {}).get("type"))
    return [
        f if answer_error(f.text, params) is None else replace(
            selected, usage=f.usage, fuser=Fallback.FORMAT_BROKEN.label(f.fuser, subject=kind))
        for f in fused
    ]


def _texts(candidates: Sequence[Candidate]) -> list[str]:
    return [c.text for c in candidates]


def _indexed(calls: Sequence[ToolCall]) -> tuple[ToolCall, ...]:
    """Whole tool calls as stream pieces: OpenAI's chunks number them with ``index``."""
    return tuple({**call, "index": i} for i, call in enumerate(calls))


async def _fuse_text(
    fuser: Fuser, messages: Sequence[ChatMessage], top: Sequence[str], params: SamplingParams
) -> _Fused:
    """One whole fused answer (the non-streamed path)."""
    stream = await _start_fuse(fuser, messages, top, params)
    parts: list[str] = []
    logprobs: list[Mapping[str, Any]] = []
    finish: str | None = "stop"
    usage = Usage()
    async with closing(merge_streams([stream])) as merged:
        async for _, delta in merged:
            parts.append(delta.text)
            if delta.logprobs:
                logprobs.append(delta.logprobs)
            finish = delta.finish_reason or finish
            usage += delta.usage or Usage()
    return _Fused("".join(parts), finish, usage, stream.fuser,
                  logprobs=merge_logprobs(logprobs))


def _report(
    chosen: _Selection, fuser: str, timings: StageTimings, fuse_usage: Usage
) -> BlendReport:
    parts = [UsagePart("member", label, usage) for label, usage in chosen.fanout.member_usage]
    parts.append(UsagePart("fuser", fuser, fuse_usage))
    return BlendReport(chosen.fanout.candidates, chosen.ranking, chosen.fanout.failures,
                       fuser, timings, tuple(parts))
