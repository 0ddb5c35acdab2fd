"""Graceful drain on SIGTERM: finish what is in flight, then end it cleanly and exit.

uvicorn, on SIGTERM, stops accepting and waits ``timeout_graceful_shutdown`` for open
connections before it cancels them (a stream then ends with no error event and no
``[DONE]``). ``DrainingServer`` tells the app's ``Drain`` when uvicorn starts stopping. Requests
in flight keep going for ``server.drain_grace_s``; at that deadline every request still
waiting on the engine is cut: a stream sends one error event (OpenAI's shape, code
``server_shutting_down``) and ``data: [DONE]``, a non-streamed request answers 503. uvicorn's own
timeout is set ``DRAIN_MARGIN_S`` later, as a backstop, so the cut comes first and the process
exits right after it.

A cut cancels the task waiting on the engine (the same cancellation a client hang-up causes,
so upstream calls stop) and turns that cancellation into ``ServerShuttingDown``. Only a task
suspended in ``Cut.step`` is cancelled; one busy sending a chunk finds the flag at its next
step. No task or timer is made per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import uvicorn

from gateway.errors import SERVER_ERROR, APIError

logger = logging.getLogger(__name__)

T = TypeVar("T")
DRAIN_MARGIN_S = 1.0  # uvicorn's backstop after the drain deadline
RETRY_AFTER_S = 1  # another replica can answer at once


class ServerShuttingDown(APIError):
    def __init__(self) -> None:
        super().__init__(
            503, "The server is shutting down and ended this request; retry it.",
            type=SERVER_ERROR, code="server_shutting_down",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class Cut:
    """One request's link to the drain: ``step`` awaits engine work the drain may cut."""

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self._task = task
        self._waiting = False
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        if self._waiting and self._task is not None:
            self._task.cancel()

    async def step(self, work: Awaitable[T]) -> T:
        """Await ``work``; raise ``ServerShuttingDown`` instead once the drain deadline hits."""
        if self.fired:
            raise ServerShuttingDown
        self._waiting = True
        try:
            return await work
        except asyncio.CancelledError:
            # ours if the drain fired and nobody else (client hang-up, uvicorn) cancelled too
            if self.fired and self._task is not None and self._task.uncancel() == 0:
                raise ServerShuttingDown from None
            raise
        finally:
            self._waiting = False


class Drain:
    """The app's shutdown state: ``begin`` once uvicorn stops accepting, cut at the deadline."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.began_at: float | None = None
        self.expired = False
        self._cuts: set[Cut] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def draining(self) -> bool:
        return self.began_at is not None

    def begin(self) -> None:
        """Start the grace period (idempotent; call on the event loop)."""
        if self.began_at is not None:
            return
        self.began_at = time.monotonic()
        logger.info("draining: %d requests in flight get %.0f s to finish",
                    len(self._cuts), self.grace_s)
        self._timer = asyncio.get_running_loop().call_later(self.grace_s, self._expire)

    @contextmanager
    def cut(self) -> Iterator[Cut]:
        """Register the current task's engine work for the duration of the block."""
        handle = Cut(asyncio.current_task())
        if self.expired:  # came in after the deadline: cut at its first step
            handle.fired = True
        self._cuts.add(handle)
        try:
            yield handle
        finally:
            self._cuts.discard(handle)

    def _expire(self) -> None:
        self.expired = True
        if self._cuts:
            logger.warning("drain grace of %.0f s is over: ending %d requests still in flight",
                           self.grace_s, len(self._cuts))
        for handle in list(self._cuts):
            handle.fire()


@contextmanager
def request_cut(drain: Drain | None) -> Iterator[Cut]:
    """``drain.cut()``, or a cut that never fires for an app without a drain."""
    if drain is None:
        yield Cut(None)
        return
    with drain.cut() as handle:
        yield handle


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling ``drain`` as soon as it starts to stop (SIGTERM, SIGINT or
    ``should_exit``); ``on_tick`` runs on the loop every 0.1 s."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if should_exit:
            self.drain.begin()
        return should_exit
