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

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self, TypeVar

from ensemble.backends.base import Backend
from ensemble.backends.fallback import single_backend
from ensemble.backends.openai_wire import merge_logprobs
from ensemble.cancellation import cancel_and_wait, closing
from ensemble.config import (
    BlendgateConfig,
    EnsembleModelConfig,
    FuserConfig,
    MemberConfig,
    NoRankerConfig,
    RankerConfig,
    SingleModelConfig,
)
from ensemble.errors import (
    DeadlineExceeded,
    FuserError,
    InvalidParamsError,
    NoCandidatesError,
    OverloadedError,
    RankerError,
    UnknownModelError,
)
from ensemble.fanout import FanoutMember, FanoutResult, fan_out
from ensemble.fusers.base import Fuser
from ensemble.fusers.factory import FuserBuilder, build_fuser
from ensemble.output_policy import (
    answer_error,
    distinct_choices,
    rank_text,
    screen,
    text_order,
    tool_winner,
    wants_json,
)
from ensemble.rankers.base import Ranker
from ensemble.rankers.factory import RankerBuilder, RankerCache, build_ranker
from ensemble.shared import Closable, SharedByConfig
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

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class _Member:
    label: str  # the backend name; ``name#i`` when one backend is listed twice
    backend: Backend
    cfg: MemberConfig


@dataclass(frozen=True)
class _Ensemble:
    cfg: EnsembleModelConfig
    members: tuple[_Member, ...]
    ranker: Ranker
    fuser: Fuser
    task_backend: Backend | None = None  # answers background tasks (cfg.tasks) alone

    def fanout_members(self, params: SamplingParams) -> list[FanoutMember]:
        """Request params first; each member's configured params fill what the request left
        unset (``SamplingParams.merged``)."""
        return [
            FanoutMember(m.label, m.backend, m.cfg.samples, params.merged(m.cfg.params),
                         self.cfg.member_timeout_s)
            for m in self.members
        ]


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

    def __init__(
        self,
        *,
        ensembles: Mapping[str, _Ensemble],
        singles: Mapping[str, Backend],
        service_ranker: Ranker | None,
        rankers: RankerCache,
        service_fuser: Fuser | None = None,
        fusers: SharedByConfig[FuserConfig, Fuser],
        owned_backends: Sequence[Backend],
        single_deadlines: Mapping[str, float] | None = None,
    ) -> None:
        self._ensembles = dict(ensembles)
        self._singles = dict(singles)
        self._single_deadlines = dict(single_deadlines or {})  # model id -> deadline_s
        self._service_ranker = service_ranker
        self._service_fuser = service_fuser
        self._rankers = rankers
        self._fusers = fusers
        self._owned_backends = list(owned_backends)

    # ------------------------------------------------------------------ construction

    @classmethod
    async def from_config(
        cls,
        config: BlendgateConfig,
        *,
        backends: Mapping[str, Backend] | None = None,
        ranker_builder: RankerBuilder = build_ranker,
        fuser_builder: FuserBuilder = build_fuser,
    ) -> BlendEngine:
        """Build backends, rankers (one per distinct config) and fusers; models load off-loop
        (backends with a ``start()`` coroutine, i.e. local models, start concurrently with the
        ranker and fuser models). Each component logs one line when it has loaded.

        ``backends`` injects ready backends (tests, embedding); the engine then does not close
        them. ``ranker_builder`` / ``fuser_builder`` replace the factories (the Ray Serve
        application builds clients of its model deployments there). Anything built before a
        failure is closed again before the error propagates.
        """
        owned: list[Backend] = []
        rankers = RankerCache(ranker_builder)
        # one fuser per distinct config, like rankers: ensembles with the same GenFuser share it
        fusers: SharedByConfig[FuserConfig, Fuser] = SharedByConfig(
            lambda cfg: fuser_builder(cfg, backends))
        starting: asyncio.Future[list[None]] | None = None
        try:
            if backends is None:
                from ensemble.backends.factory import build_backends

                backends = owned_map = build_backends(config)
                owned = list(owned_map.values())
                # local models load while the rankers and fusers below load theirs
                starting = asyncio.ensure_future(
                    _all([_logged(f"backend {b.name}", _start(b)) for b in owned]))
            rankers.bind_backends(backends)  # an llm_judge ranker calls one of them
            ensembles: dict[str, _Ensemble] = {}
            singles: dict[str, Backend] = {}
            single_deadlines: dict[str, float] = {}
            for model in config.models:
                if isinstance(model, SingleModelConfig):
                    singles[model.id] = single_backend(model, backends)
                    if model.deadline_s is not None:
                        single_deadlines[model.id] = model.deadline_s
                    continue
                fuser = await _logged(f"fuser {model.fuser.type} of {model.id}",
                                      fusers.get(model.fuser))
                ranker = await _logged(f"ranker {model.ranker.type} of {model.id}",
                                       rankers.get(model.ranker))
                tasks = backends[model.tasks.backend] if model.tasks is not None else None
                ensembles[model.id] = _Ensemble(model, _members(model, backends), ranker, fuser,
                                                tasks)
            for name in config.served_model_ids():
                if name not in ensembles and name not in singles:
                    singles[name] = backends[name]
            # /v1/rank and /v1/compare need a ranking model: `type: none` only keeps the
            # members' order, so it never serves them (the routes answer 501 instead)
            service: Ranker | None = None
            if config.rank_service is not None:
                if not isinstance(config.rank_service, NoRankerConfig):
                    service = await _logged(f"ranker {config.rank_service.type} of rank_service",
                                            rankers.get(config.rank_service))
            else:
                service = next((e.ranker for e in ensembles.values()
                                if not isinstance(e.cfg.ranker, NoRankerConfig)), None)
            if config.fuse_service is not None:
                service_fuser: Fuser | None = await _logged(
                    f"fuser {config.fuse_service.type} of fuse_service",
                    fusers.get(config.fuse_service))
            else:
                service_fuser = next((e.fuser for e in ensembles.values()), None)
            if starting is not None:
                await starting
        except BaseException:
            if starting is not None:
                await cancel_and_wait([starting])
            await _close_all([fusers, rankers, *owned])
            raise
        return cls(ensembles=ensembles, singles=singles, service_ranker=service,
                   rankers=rankers, service_fuser=service_fuser, fusers=fusers,
                   owned_backends=owned, single_deadlines=single_deadlines)

    def models(self) -> list[ServedModel]:
        served = [
            ServedModel(mid, "ensemble", tuple(dict.fromkeys(m.cfg.backend for m in e.members)))
            for mid, e in self._ensembles.items()
        ]
        served += [ServedModel(mid, "single", (b.name,)) for mid, b in self._singles.items()]
        return served

    def service_ranker(self) -> Ranker | None:
        return self._service_ranker

    async def ranker(self, cfg: RankerConfig) -> Ranker:
        """The engine's ranker for ``cfg``, built on first use and shared with its ensembles
        (an A/B judge, ``blendgate eval``); the engine closes it."""
        return await self._rankers.get(cfg)

    def service_fuser(self) -> Fuser | None:
        """The fuser behind ``POST /v1/fuse``: ``fuse_service``, else the first ensemble's."""
        return self._service_fuser

    async def aclose(self) -> None:
        backends, self._owned_backends = self._owned_backends, []
        await _close_all([self._fusers, self._rankers, *backends])

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
        if isinstance(target, _Ensemble):
            return await self._complete_ensemble(target, request)
        async with _within(self._single_deadline(request.model), "waiting for the backend"):
            completions = await target.complete(request.messages, request.params, request.n)
        usage = sum((c.usage for c in completions if c.usage is not None), Usage())
        choices = [Choice(i, c.text, c.finish_reason, c.tool_calls, c.logprobs, c.refusal,
                          c.backend) for i, c in enumerate(completions)]
        return BlendResult(request.model, choices, usage)

    async def stream(
        self, request: BlendRequest
    ) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        """Deltas (``index`` = choice) as they are produced, then one :class:`StreamEnd`.

        An async generator: ``aclose()`` it (or cancel its consumer) to stop every upstream call.
        """
        target, request = self._lookup(request)
        if isinstance(target, _Ensemble):
            async with closing(self._stream_ensemble(target, request)) as events:
                async for event in events:
                    yield event
            return
        usage = Usage()
        deadline = self._single_deadline(request.model)
        async with closing(target.stream(request.messages, request.params, request.n)) as deltas:
            while True:
                # each wait on its own, never across the yield (see _Deadline)
                async with _within(deadline, "streaming from the backend"):
                    delta = await anext(deltas, None)
                if delta is None:
                    break
                usage += delta.usage or Usage()
                yield delta
        yield StreamEnd(usage, None)

    def _single_deadline(self, model: str) -> _Deadline | None:
        """A pass-through model's ``deadline_s``, started now; None when it has none."""
        seconds = self._single_deadlines.get(model)
        return None if seconds is None else _Deadline.after(seconds)

    def _lookup(self, request: BlendRequest) -> tuple[_Ensemble | Backend, BlendRequest]:
        """What serves ``request``, and the request as it is served (a task's may be capped)."""
        if request.n < 1:
            raise InvalidParamsError(f"n must be at least 1, got {request.n}", param="n")
        found = self._ensembles.get(request.model) or self._singles.get(request.model)
        if found is None:
            raise UnknownModelError(request.model)
        tasks = found.cfg.tasks if isinstance(found, _Ensemble) else None
        if isinstance(found, _Ensemble) and found.task_backend is not None and \
                tasks is not None and is_background_task(request, tasks):
            # A title/tag/follow-up: no fan-out for it, and a short answer.
            cap = tasks.max_tokens
            if cap is not None:
                tokens = min(request.params.max_tokens or cap, cap)
                request = replace(request, params=replace(request.params, max_tokens=tokens))
            return found.task_backend, request
        fuser = found.cfg.fuser.type if isinstance(found, _Ensemble) else None
        if request.params.logprobs and fuser not in (None, "llm", "none"):
            # The text comes from the fuser (or its member); only an LLM or a member has them.
            raise InvalidParamsError(
                f"logprobs are not available from `{request.model}`: its {fuser} fuser "
                "produces text without token log-probabilities.", param="logprobs")
        return found, request

    # ------------------------------------------------------------------ ensembles

    async def _complete_ensemble(self, ens: _Ensemble, request: BlendRequest) -> BlendResult:
        started = time.perf_counter()
        deadline = _Deadline.start(ens.cfg)
        chosen = await self._select(ens, request, deadline)
        fuse_started = time.perf_counter()
        fused = await _answer(ens, request, chosen, deadline)
        done = time.perf_counter()
        choices = [Choice(i, f.text, f.finish_reason, f.tool_calls, f.logprobs)
                   for i, f in enumerate(fused)]
        fuse_usage = sum((f.usage for f in fused), Usage())
        usage = chosen.fanout.usage + fuse_usage
        timings = StageTimings(chosen.fanout_s, chosen.rank_s, done - fuse_started, done - started)
        report = _report(chosen, fused[0].fuser, timings, fuse_usage)
        return BlendResult(request.model, choices, usage, report)

    async def _stream_ensemble(
        self, ens: _Ensemble, request: BlendRequest
    ) -> AsyncIterator[TextDelta | StreamEnd]:
        started = time.perf_counter()
        deadline = _Deadline.start(ens.cfg)
        chosen = await self._select(ens, request, deadline)
        fuse_started = time.perf_counter()
        fuse_usage = Usage()
        if chosen.call is not None or wants_json(request.params) or ens.cfg.fuser.type == "none":
            # A tool call, JSON that is checked before it is sent, or candidates as they are:
            # whole answers.
            fused = await _answer(ens, request, chosen, deadline)
            for choice, answer in enumerate(fused):
                fuse_usage += answer.usage
                yield TextDelta(answer.text, choice, answer.finish_reason,
                                tool_calls=_indexed(answer.tool_calls), logprobs=answer.logprobs)
            done = time.perf_counter()
            timings = StageTimings(chosen.fanout_s, chosen.rank_s, done - fuse_started,
                                   done - started)
            yield StreamEnd(chosen.fanout.usage + fuse_usage,
                            _report(chosen, fused[0].fuser, timings, fuse_usage))
            return
        fuser = DEADLINE_FALLBACK
        sent = False
        params = request.params.without_tools()
        try:
            async with deadline.bound("fusing"):
                streams = await _all([
                    _start_fuse(ens.fuser, request.messages, _texts(chosen.top), params)
                    for _ in range(request.n)
                ])
            fuser = streams[0].fuser
            async with closing(_merge(streams, deadline)) as merged:
                async for choice, delta in merged:
                    fuse_usage += delta.usage or Usage()
                    sent = True
                    yield replace(delta, index=choice)
        except DeadlineExceeded:
            if sent or not deadline.fallback:
                raise  # mid-stream: the gateway sends one error event, then [DONE]
            fuser = DEADLINE_FALLBACK
            best = chosen.top[0]
            for choice in range(request.n):
                yield TextDelta(best.text, choice, "stop", logprobs=best.logprobs)
        done = time.perf_counter()
        timings = StageTimings(chosen.fanout_s, chosen.rank_s, done - fuse_started, done - started)
        yield StreamEnd(chosen.fanout.usage + fuse_usage,
                        _report(chosen, fuser, timings, fuse_usage))

    async def _select(
        self, ens: _Ensemble, request: BlendRequest, deadline: _Deadline
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


DEADLINE_FALLBACK = "none (deadline)"  # BlendReport.fuser when on_deadline answered
TOOL_CALL_ANSWER = "none (tool call)"  # BlendReport.fuser when a member's tool call answered


@dataclass(frozen=True)
class _Deadline:
    """One request's ``deadline_s``: an ensemble's, shared by fan-out, ranking and fusing, or a
    pass-through model's.

    ``bound(stage)`` runs a block under it and turns its expiry into ``DeadlineExceeded``.
    Each await is bounded on its own (never a scope spanning a ``yield``, which would cancel
    whatever the consumer is doing), so a fuse stream that trickles tokens is cut too.
    """

    at: float  # loop time
    seconds: float
    fallback: bool  # on_deadline: best_candidate

    @classmethod
    def start(cls, cfg: EnsembleModelConfig) -> _Deadline:
        return cls.after(cfg.deadline_s, fallback=cfg.on_deadline == "best_candidate")

    @classmethod
    def after(cls, seconds: float, *, fallback: bool = False) -> _Deadline:
        return cls(asyncio.get_running_loop().time() + seconds, seconds, fallback)

    def left_s(self) -> float:
        return max(0.0, self.at - asyncio.get_running_loop().time())

    @asynccontextmanager
    async def bound(self, stage: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout_at(self.at):
                yield
        except TimeoutError as exc:
            if self.left_s() > 0:
                raise  # someone else's timeout
            raise DeadlineExceeded(f"deadline of {self.seconds:g}s passed while {stage}") from exc


def _within(deadline: _Deadline | None, stage: str) -> AbstractAsyncContextManager[None]:
    """``deadline.bound(stage)``; no bound at all without a deadline."""
    return nullcontext() if deadline is None else deadline.bound(stage)


# ---------------------------------------------------------------------- helpers


def member_labels(model: EnsembleModelConfig) -> list[str]:
    """Each member's label in reports and metrics: its backend's name, ``name#i`` when one
    backend is listed twice."""
    names = [m.backend for m in model.members]
    return [m.backend if names.count(m.backend) == 1 else f"{m.backend}#{i}"
            for i, m in enumerate(model.members)]


def _members(model: EnsembleModelConfig, backends: Mapping[str, Backend]) -> tuple[_Member, ...]:
    return tuple(_Member(label, backends[m.backend], m)
                 for label, m in zip(member_labels(model), model.members, strict=True))


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
    ens: _Ensemble, request: BlendRequest, chosen: _Selection, deadline: _Deadline
) -> list[_Fused]:
    """The ``n`` whole answers: the winning tool call, or the fused text (see output_policy).

    With a JSON ``response_format`` only an ``llm`` fuser (constrained by its backend) fuses;
    others fall back to the best candidate. A fused answer that breaks the format is
    replaced by the best candidate too, and ``fuser`` in the report says so.
    """
    if chosen.call is not None:
        call = chosen.call
        return [_Fused("", "tool_calls", Usage(), TOOL_CALL_ANSWER, call.tool_calls,
                       call.logprobs)] * request.n
    if ens.cfg.fuser.type == "none":  # no fusion: the n best distinct candidates
        ordered = text_order(chosen.fanout.candidates, chosen.ranking)
        label = DEADLINE_FALLBACK if deadline.fallback and not deadline.left_s() else "none"
        return [_Fused(c.text, c.finish_reason or "stop", Usage(), label, logprobs=c.logprobs)
                for c in distinct_choices(ordered, request.n)]
    best = chosen.top[0]
    selected = _Fused(best.text, best.finish_reason or "stop", Usage(), "none",
                      logprobs=best.logprobs)
    params = request.params.without_tools()
    json_mode = wants_json(params)
    if json_mode and ens.cfg.fuser.type != "llm":
        kind = ens.cfg.fuser.type
        label = "none" if kind == "none" else f"none ({kind} cannot follow response_format)"
        return [replace(selected, fuser=label)] * request.n
    try:
        async with deadline.bound("fusing"):
            fused = await _all([
                _fuse_text(ens.fuser, request.messages, _texts(chosen.top), params)
                for _ in range(request.n)
            ])
    except DeadlineExceeded:
        if not deadline.fallback:
            raise
        return [replace(selected, fuser=DEADLINE_FALLBACK)] * request.n
    if json_mode:
        fused = [
            f if answer_error(f.text, params) is None else replace(
                selected, usage=f.usage,
                fuser=f"{f.fuser} (invalid {params.response_format['type']}; best candidate)")
            for f in fused
        ]
    return fused


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
    async with closing(_merge([stream])) as merged:
        async for _, delta in merged:
            parts.append(delta.text)
            if delta.logprobs:
                logprobs.append(delta.logprobs)
            finish = delta.finish_reason or finish
            usage += delta.usage or Usage()
    return _Fused("".join(parts), finish, usage, stream.fuser,
                  logprobs=merge_logprobs(logprobs))


async def _merge(
    streams: Sequence[FuseStream], deadline: _Deadline | None = None
) -> AsyncIterator[tuple[int, TextDelta]]:
    """Interleave several fuse streams as their deltas arrive: (choice index, delta).

    One task per stream feeds a queue; the first failure is raised (as ``FuserError``) and
    stops the others; leaving early cancels and closes every stream. Each wait for the next
    delta is bounded by ``deadline`` (``DeadlineExceeded``).
    """
    queue: asyncio.Queue[tuple[int, TextDelta | None] | BaseException] = asyncio.Queue()

    async def pump(choice: int, stream: FuseStream) -> None:
        try:
            async with closing(stream.deltas) as deltas:
                async for delta in deltas:
                    queue.put_nowait((choice, delta))
        except (FuserError, OverloadedError) as exc:
            queue.put_nowait(exc)
        except Exception as exc:  # noqa: BLE001 - reported to the consumer, not lost
            queue.put_nowait(FuserError(f"fuser {stream.fuser}: {type(exc).__name__}: {exc}"))
        else:
            queue.put_nowait((choice, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            async with _within(deadline, "fusing"):
                item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            choice, delta = item
            if delta is None:
                running -= 1
            else:
                yield choice, delta
    finally:
        await cancel_and_wait(tasks)


async def _all(coros: Sequence[Awaitable[T]]) -> list[T]:
    """Await all concurrently; the first failure cancels the rest and is raised as is."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await cancel_and_wait(tasks)


async def _start(backend: Backend) -> None:
    """Load a local model now rather than on its first request, when the backend can."""
    start = getattr(backend, "start", None)
    if start is not None:
        await start()


async def _logged(component: str, loading: Awaitable[T]) -> T:
    """Await ``loading`` and log one line saying how long ``component`` took to load (a shared
    ranker already loaded shows 0.0 s)."""
    started = time.perf_counter()
    result = await loading
    logger.info("loaded %s in %.1f s", component, time.perf_counter() - started)
    return result


async def _close_all(closables: Sequence[Closable]) -> None:
    for item in closables:
        try:
            await item.aclose()
        except Exception:  # closing the rest matters more than one failure
            logger.exception("closing %r failed", item)


def _report(
    chosen: _Selection, fuser: str, timings: StageTimings, fuse_usage: Usage
) -> BlendReport:
    parts = [UsagePart("member", label, usage) for label, usage in chosen.fanout.member_usage]
    parts.append(UsagePart("fuser", fuser, fuse_usage))
    return BlendReport(chosen.fanout.candidates, chosen.ranking, chosen.fanout.failures,
                       fuser, timings, tuple(parts))
