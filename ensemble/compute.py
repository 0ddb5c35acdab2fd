"""Off-loop model execution: size-or-deadline batching on one dedicated thread per model.

The event loop only awaits. ``BatchWorker.submit(item)`` queues an item and returns its result;
one consumer task gathers items until ``max_batch_size`` or ``max_wait_ms`` after the first, then
runs ``process(batch)`` on the worker's own single-thread executor (so two batches of one model
never run on top of each other), and resolves one future per item. Items whose caller was
cancelled before the batch started are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from ensemble.errors import OverloadedError

T = TypeVar("T")
R = TypeVar("R")
U = TypeVar("U")


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    weight: int


class BatchWorker(Generic[T, R]):
    """Batches items submitted concurrently and runs them with ``process`` off the event loop.

    ``weight(item)`` lets one item count as several rows (e.g. all n(n-1) pairs of one ranking
    request), so ``max_batch_size`` bounds rows, not requests; an item heavier than the limit
    runs alone.
    """

    def __init__(
        self,
        process: Callable[[Sequence[T]], Sequence[R]],
        *,
        name: str,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        weight: Callable[[T], int] = lambda _item: 1,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._process = process
        self._weight = weight
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Pending[T, R]] = asyncio.Queue(maxsize=max_queue)
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix=f"blendgate-{name}")
        self._consumer: asyncio.Task[None] | None = None
        self._carry: _Pending[T, R] | None = None
        self.batches_run = 0  # calls of ``process`` so far (tests and stats count batching)

    async def run(self, fn: Callable[[], U]) -> U:
        """Run an arbitrary call on this worker's device thread (loading, warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def load(self, build: Callable[[], U]) -> U:
        """``run(build)`` for a model's loading; if it fails, close the worker (its thread must
        not outlive a model that never came up) and re-raise."""
        try:
            return await self.run(build)
        except BaseException:
            await self.aclose()
            raise

    async def submit(self, item: T) -> R:
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume(), name=f"batch-{self.name}")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(item, future, max(1, self._weight(item))))
        except asyncio.QueueFull:
            raise OverloadedError(f"{self.name}: queue full ({self._queue.maxsize} waiting)")
        return await future

    async def _next_batch(self) -> list[_Pending[T, R]]:
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, rows = [first], first.weight
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while rows < self.max_batch_size:
            timeout = deadline - asyncio.get_running_loop().time()
            try:
                nxt = (self._queue.get_nowait() if timeout <= 0
                       else await asyncio.wait_for(self._queue.get(), timeout))
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if rows + nxt.weight > self.max_batch_size:
                self._carry = nxt  # starts the next batch
                break
            batch.append(nxt)
            rows += nxt.weight
        return batch

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._next_batch() if not p.future.done()]
            if not batch:
                continue
            items = [p.item for p in batch]
            self.batches_run += 1
            try:
                results = await loop.run_in_executor(self.executor, self._process, items)
            except Exception as exc:  # noqa: BLE001 - every waiter gets the model's error
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)

    async def aclose(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)
