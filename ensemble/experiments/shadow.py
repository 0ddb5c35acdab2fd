"""Shadow runs off the request path: a bounded queue and a fixed number of workers.

``submit`` never waits: when the queue is full the job is dropped and counted, so a slow
shadow arm sheds load instead of growing memory or slowing the answers being served. A job that
fails is counted and logged; nothing of it reaches the client of the served request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)
J = TypeVar("J")


@dataclass
class ShadowStats:
    submitted: int = 0
    dropped: int = 0  # the queue was full
    failed: int = 0  # the shadow arm or the judge failed
    completed: int = 0


class ShadowRunner(Generic[J]):
    def __init__(self, run: Callable[[J], Awaitable[None]], *, concurrency: int,
                 queue_size: int, name: str = "shadow") -> None:
        self._run = run
        self._queue: asyncio.Queue[J] = asyncio.Queue(queue_size)
        self.stats = ShadowStats()
        self._workers = [asyncio.create_task(self._work(), name=f"{name}-{i}")
                         for i in range(concurrency)]

    def submit(self, job: J) -> bool:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        self.stats.submitted += 1
        return True

    def pending(self) -> int:
        return self._queue.qsize()

    async def drain(self) -> None:
        """Wait until every submitted job has finished (tests, shutdown)."""
        await self._queue.join()

    async def aclose(self, timeout_s: float = 0.0) -> None:
        """Let queued jobs finish for up to ``timeout_s``, then cancel the rest."""
        if timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), timeout_s)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - counted; the served answer is gone
                self.stats.failed += 1
                logger.warning("shadow run failed: %s: %s", type(exc).__name__, exc)
            else:
                self.stats.completed += 1
            finally:
                self._queue.task_done()
