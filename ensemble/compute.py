"""Off-loop model execution: size-or-deadline batching on one dedicated thread per model.

The event loop only awaits. ``BatchWorker.submit(item)`` queues an item (one request's job)
and returns its result; one consumer task gathers work until ``max_batch_size`` rows are
waiting or ``max_wait_ms`` after the first, then runs ``process(batch)`` on the worker's own
single-thread executor (so two batches of one model never run on top of each other), and
resolves one future per item. Items whose caller was cancelled before their batch started
are dropped.

Fairness: a job heavier than ``max_batch_size`` rows is cut into chunks of at most that many
rows (when the worker has a ``split``; the chunk results are ``join``-ed back), and batches are
filled round-robin across the waiting jobs, one chunk per job per round. So one request never
puts more than ``max_batch_size`` rows into a batch, and a small request submitted after a
huge one waits for at most one batch of it, not for all of it.

Threads: torch's intra-op thread count is one setting for the whole process, yet every local
model configures its own ``threads``. :data:`TORCH_THREADS` is the one owner of that setting:
models ask it (``request_torch_threads``) instead of calling ``torch.set_num_threads``, the
largest request wins (a model configured for 4 threads is not cut to 1 by one loaded after
it) and a request that cannot be honoured is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ensemble.errors import OverloadedError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
U = TypeVar("U")


@dataclass
class _Job(Generic[T, R]):
    """One submitted item: its chunks still to run, and the results of those that ran."""

    future: asyncio.Future[R]
    chunks: deque[tuple[int, T, int]]  # (position, chunk, weight)
    results: dict[int, R] = field(default_factory=dict)
    parts: int = 1
    served_in: int = -1  # the last batch that took a chunk of it (-1: none yet)


class BatchWorker(Generic[T, R]):
    """Batches items submitted concurrently and runs them with ``process`` off the event loop.

    ``weight(item)`` lets one item count as several rows (e.g. all n(n-1) pairs of one ranking
    request), so ``max_batch_size`` bounds rows, not requests. ``split(item, rows)`` cuts an
    item into parts of at most ``rows`` rows and ``join(results)`` puts their results back
    together (in order); without them an item heavier than the limit runs alone, whole.
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
        split: Callable[[T, int], Sequence[T]] | None = None,
        join: Callable[[Sequence[R]], R] | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        if (split is None) != (join is None):
            raise ValueError("split and join go together")
        self._process = process
        self._weight = weight
        self._split = split
        self._join = join
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._jobs: deque[_Job[T, R]] = deque()  # jobs with chunks still waiting
        self._waiting_rows = 0
        self._arrived = asyncio.Event()
        self._own_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix=f"blendgate-{name}")
        self._consumer: asyncio.Task[None] | None = None
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
        if len(self._jobs) >= self.max_queue:
            raise OverloadedError(f"{self.name}: queue full ({self.max_queue} waiting)")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        weight = max(1, self._weight(item))
        parts: Sequence[T] = [item]
        if self._split is not None and weight > self.max_batch_size:
            parts = self._split(item, self.max_batch_size)
        chunks = deque((i, part, max(1, self._weight(part)) if len(parts) > 1 else weight)
                       for i, part in enumerate(parts))
        self._jobs.append(_Job(future, chunks, parts=len(parts)))
        self._waiting_rows += sum(w for _, _, w in chunks)
        self._arrived.set()
        return await future

    async def _gather(self) -> None:
        """Wait for work, then until ``max_batch_size`` rows wait or ``max_wait_s`` passed."""
        while not self._jobs:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while self._waiting_rows < self.max_batch_size:
            self._arrived.clear()
            timeout = deadline - asyncio.get_running_loop().time()
            if timeout <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)

    def _next_batch(self) -> list[tuple[_Job[T, R], int, T]]:
        """Round-robin over the waiting jobs, one chunk each per round, up to the row limit;
        the least recently served jobs (new ones first) come first in each round."""
        batch: list[tuple[_Job[T, R], int, T]] = []
        rows = 0
        for job in [j for j in self._jobs if j.future.done()]:  # cancelled callers
            self._drop(job)
        order = sorted(self._jobs, key=lambda j: j.served_in)  # stable: arrival order next
        progress = True
        while progress and rows < self.max_batch_size:
            progress = False
            for job in order:
                if not job.chunks or rows >= self.max_batch_size:
                    continue
                position, chunk, weight = job.chunks[0]
                if batch and rows + weight > self.max_batch_size:
                    continue
                job.chunks.popleft()
                job.served_in = self.batches_run
                batch.append((job, position, chunk))
                rows += weight
                progress = True
        self._waiting_rows -= rows
        for job in [j for j in self._jobs if not j.chunks]:
            self._jobs.remove(job)  # all its chunks are in flight
        return batch

    def _drop(self, job: _Job[T, R]) -> None:
        self._waiting_rows -= sum(w for _, _, w in job.chunks)
        job.chunks.clear()
        self._jobs.remove(job)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather()
            batch = self._next_batch()
            if not batch:
                continue
            self.batches_run += 1
            try:
                results = await loop.run_in_executor(
                    self.executor, self._process, [chunk for _, _, chunk in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter gets the model's error
                for job, _, _ in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                    if job in self._jobs:
                        self._drop(job)
                continue
            for (job, position, _), result in zip(batch, results, strict=True):
                job.results[position] = result
                if len(job.results) == job.parts and not job.future.done():
                    if self._join is None:
                        job.future.set_result(result)
                    else:
                        job.future.set_result(self._join([job.results[i]
                                                          for i in range(job.parts)]))

    async def aclose(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if self._own_executor:
            self.executor.shutdown(wait=False, cancel_futures=True)


class TorchThreads:
    """The owner of ``torch.set_num_threads``: the largest count requested so far wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # models load on their own threads
        self._granted = 0
        self._by = ""

    @property
    def granted(self) -> int:
        """The count set so far (0: nobody has asked yet)."""
        return self._granted

    def request(self, threads: int, by: str) -> int:
        """Ask for ``threads`` for model ``by``; returns the count torch now uses."""
        import torch  # lazily: importing ensemble.compute must stay light

        with self._lock:
            if threads <= self._granted:
                if threads < self._granted:
                    logger.warning("%s asks for %d torch threads; keeping %d (asked by %s): "
                                   "the count is process-wide", by, threads, self._granted,
                                   self._by)
                return self._granted
            if self._granted:
                logger.info("torch threads: %d for %s (was %d for %s)", threads, by,
                            self._granted, self._by)
            torch.set_num_threads(threads)
            self._granted, self._by = threads, by
            return threads


# One per process on purpose: it owns a setting that torch itself keeps process-wide.
TORCH_THREADS = TorchThreads()


def request_torch_threads(threads: int, by: str) -> int:
    """``TORCH_THREADS.request``: call it where a model loads, never torch.set_num_threads."""
    return TORCH_THREADS.request(threads, by)
