"""Per-key budgets: requests per minute and tokens per UTC day, enforced before fan-out.

A request first *reserves* an estimate of its tokens (:func:`estimate_tokens`) and, when its
answer is in, *settles* to the tokens it really used (an ensemble: every member call and the
fuser, the engine's usage). A request is admitted only while today's spent tokens plus the
reservations in flight plus its own fit the budget, so concurrent requests cannot overspend
it together; the one exception is a request that alone no longer fits while nothing else is
in flight: it is let through (and may overspend by at most its own tokens), so a key whose
budget is nearly spent can still finish its day. Everything else that does not fit is a 429
with ``Retry-After`` in OpenAI's error shape: the seconds to the next UTC day when the budget
is spent, one second while reservations in flight hold it.

The state lives in this process (one event loop, so no lock is needed: nothing awaits
between the check and the reservation). Several gateway replicas each enforce the limits on
their own share of the traffic.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field

from ensemble import Ranker
from ensemble.concurrency import closing
from ensemble.experiments import ExperimentRuntime, KeyUsageEvent
from ensemble.types import BlendRequest, BlendResult, ServedModel, StreamEnd, TextDelta, Usage
from gateway.config import GatewayConfig
from gateway.convert import RequestLimits
from gateway.errors import RATE_LIMIT, APIError
from gateway.keys import KeyRecord
from gateway.loading import Engine
from gateway.metrics import GatewayMetrics

DAY_S = 86_400
WINDOW_S = 60.0


@dataclass
class _KeyState:
    day: int  # UTC day number the token counts are for
    started: deque[float] = field(default_factory=deque)  # request times in the last minute
    spent: int = 0  # tokens settled today
    reserved: int = 0  # tokens held by requests in flight
    in_flight: int = 0


@dataclass(frozen=True)
class Reservation:
    key: str
    model: str
    tokens: int
    day: int


class Budgets:
    """Every key's minute window and day counters (see the module docstring)."""

    def __init__(self, metrics: GatewayMetrics, *, samples: Mapping[str, int] | None = None,
                 reserve_tokens: int = 1024, clock: Callable[[], float] = time.time,
                 runtime: Callable[[], ExperimentRuntime | None] = lambda: None) -> None:
        """``samples``: candidates per choice of each ensemble; ``reserve_tokens``: the answer
        length a request without max_tokens reserves (see :func:`estimate_tokens`);
        ``runtime``: the experiment runtime once started, whose store (if any) records every
        request's usage per key."""
        self._metrics = metrics
        self._runtime = runtime
        self._samples = dict(samples or {})
        self._reserve_tokens = reserve_tokens
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}

    @classmethod
    def of(cls, config: GatewayConfig, metrics: GatewayMetrics, limits: RequestLimits,
           runtime: Callable[[], ExperimentRuntime | None]) -> Budgets:
        server = config.server
        return cls(metrics, samples=limits.samples, runtime=runtime,
                   reserve_tokens=server.default_max_tokens or server.key_reserve_tokens)

    def engine_for(self, key: KeyRecord | None, engine: Engine) -> Engine:
        """``engine`` as the requests of a keys-file key see it (counted, and limited when the
        key has limits); as it is for other requests."""
        if key is None:
            return engine
        return BudgetedEngine(engine, self, key, self.estimate)

    def estimate(self, request: BlendRequest) -> int:
        return estimate_tokens(request, candidates=self._samples.get(request.model, 1),
                               max_tokens=self._reserve_tokens)

    def reserve(self, key: KeyRecord, tokens: int, model: str = "") -> Reservation:
        """Admit one request of about ``tokens`` for ``key``, or raise a 429 ``APIError``."""
        now = self._clock()
        state = self._state(key.name, now)
        if key.requests_per_minute is not None:
            while state.started and state.started[0] <= now - WINDOW_S:
                state.started.popleft()
            if len(state.started) >= key.requests_per_minute:
                wait = state.started[0] + WINDOW_S - now
                self._refuse(key, "requests", wait, f"{key.requests_per_minute} requests per "
                             "minute")
        if key.tokens_per_day is not None:
            if state.spent >= key.tokens_per_day:
                self._refuse(key, "tokens", DAY_S - now % DAY_S,
                             f"{key.tokens_per_day} tokens per day")
            if state.in_flight and state.spent + state.reserved + tokens > key.tokens_per_day:
                self._refuse(key, "tokens", 1, f"{key.tokens_per_day} tokens per day, with "
                             "requests in flight holding the rest")
        state.started.append(now)
        state.reserved += tokens
        state.in_flight += 1
        self._metrics.observe_key_request(key.name, "admitted")
        return Reservation(key.name, model, tokens, state.day)

    def settle(self, reservation: Reservation, used: Usage) -> None:
        """The request is over and used ``used``: release its reservation, record the use."""
        state = self._keys[reservation.key]
        state.in_flight -= 1
        if reservation.day == state.day:  # a reservation from yesterday was reset away
            state.reserved -= reservation.tokens
            state.spent += used.total_tokens
        self._metrics.observe_key_tokens(reservation.key, used.total_tokens)
        runtime = self._runtime()
        if runtime is not None and runtime.store is not None:
            runtime.store.submit(KeyUsageEvent(reservation.key, reservation.model,
                                               used.prompt_tokens, used.completion_tokens))

    def spent(self, key: str) -> int:
        """Tokens settled today by ``key``."""
        state = self._keys.get(key)
        return state.spent if state is not None and state.day == self._today() else 0

    def _today(self) -> int:
        return int(self._clock() // DAY_S)

    def _state(self, key: str, now: float) -> _KeyState:
        day = int(now // DAY_S)
        state = self._keys.setdefault(key, _KeyState(day))
        if state.day != day:  # a new UTC day: fresh token counts
            state.day, state.spent, state.reserved = day, 0, 0
        return state

    def _refuse(self, key: KeyRecord, kind: str, wait_s: float, limit: str) -> None:
        self._metrics.observe_key_request(key.name, f"limited_{kind}")
        raise APIError(
            429, f"Rate limit reached for key '{key.name}' on {kind}: {limit}. "
                 f"Try again in {math.ceil(wait_s)}s.",
            type=RATE_LIMIT, param=kind, code="rate_limit_exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


def estimate_tokens(request: BlendRequest, *, candidates: int, max_tokens: int) -> int:
    """A generous guess of the tokens ``request`` will use, reserved until it settles.

    ``candidates`` is the member samples per choice (1 for a single model); every candidate
    and every fused choice reads the prompt and writes up to ``max_tokens`` (the request's,
    else ``server.key_reserve_tokens``). A token is at least one byte of text in practice, so
    a byte count plus a few tokens of chat template per message bounds the prompt.
    """
    prompt = sum(len(m.content.encode()) + 8 for m in request.messages)
    answer = request.params.max_tokens or max_tokens
    calls = request.n * (candidates + (1 if candidates > 1 else 0))
    return calls * (prompt + answer)


class BudgetedEngine:
    """An ``Engine`` that reserves and settles every answer against one key's budget."""

    def __init__(self, engine: Engine, budgets: Budgets, key: KeyRecord,
                 estimate: Callable[[BlendRequest], int]) -> None:
        self._engine = engine
        self._budgets = budgets
        self._key = key
        self._estimate = estimate

    def models(self) -> list[ServedModel]:
        return self._engine.models()

    def service_ranker(self) -> Ranker | None:
        return self._engine.service_ranker()

    async def aclose(self) -> None:
        """The engine is the app's, not this request's: nothing to close."""

    async def complete(self, request: BlendRequest) -> BlendResult:
        reservation = self._budgets.reserve(self._key, self._estimate(request), request.model)
        used = Usage()
        try:
            result = await self._engine.complete(request)
            used = result.usage
            return result
        finally:
            self._budgets.settle(reservation, used)

    async def stream(self, request: BlendRequest) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        reservation = self._budgets.reserve(self._key, self._estimate(request), request.model)
        seen = Usage()  # what the deltas reported, for a stream that fails before its end
        end: StreamEnd | None = None
        try:
            async with closing(self._engine.stream(request)) as events:
                async for event in events:
                    if isinstance(event, StreamEnd):
                        end = event
                    else:
                        seen += event.usage or Usage()
                    yield event
        finally:
            self._budgets.settle(reservation, end.usage if end else seen)
