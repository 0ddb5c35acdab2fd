"""Async helpers: cleanup that survives cancellation, all-or-nothing gathers, thread → loop
hand-off and load-once (in the spirit of Starlette's ``concurrency.py``).

Cleanup: when a client disconnects, the server cancels the request's task through an anyio
cancel scope, and anyio re-delivers that cancellation at EVERY ``await`` inside the scope,
``finally`` blocks included. A cleanup such as "cancel the fuse tasks, then wait for them to
close their upstream responses" is then interrupted at its first ``await``: the upstream
generation keeps running and its pooled connection is never released. Every such cleanup goes
through :func:`shielded`, which shields it (bounded by ``CLEANUP_LIMIT_S``, so a task that
ignores cancellation cannot hold the caller forever).

Threads: local models run on their own worker threads; :class:`ThreadFeed` carries what such a
thread produces (tokens, chunks) into the event loop, and :class:`LoadOnce` loads a model on
its thread the first time anyone needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio

T = TypeVar("T")
CLEANUP_LIMIT_S = 5.0


async def shielded(cleanup: Awaitable[Any], limit_s: float = CLEANUP_LIMIT_S) -> None:
    """Await ``cleanup`` to the end even if the caller is being cancelled (at most ``limit_s``)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(limit_s):
        await cleanup


async def cancel_and_wait(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait, shielded, until every one has finished its own cleanup."""
    for task in tasks:
        task.cancel()
    if tasks:
        await shielded(asyncio.gather(*tasks, return_exceptions=True))


async def gather_or_cancel(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Await all concurrently; the first failure cancels the rest and is raised as is."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        await cancel_and_wait(tasks)


async def aclose_shielded(iterator: AsyncIterator[Any]) -> None:
    """``aclose()`` an async generator (closing its upstream call), shielded; no-op otherwise."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await shielded(close())


@asynccontextmanager
async def closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close an async generator on exit, so an abandoned stream stops its upstream call."""
    try:
        yield iterator
    finally:
        await aclose_shielded(iterator)


class ThreadFeed(Generic[T]):
    """A queue that worker threads ``put`` into and the event loop ``get``-s from.

    Create it on the loop. ``put`` is safe from any thread and never blocks it; once the loop
    has closed it drops the item (nobody is listening any more).
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T] = asyncio.Queue()

    def put(self, item: T) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def get(self) -> T:
        return await self._queue.get()

    def empty(self) -> bool:
        return self._queue.empty()


class LoadOnce(Generic[T]):
    """A value built by ``load`` on ``executor`` the first time ``get()`` is awaited.

    Concurrent first callers wait for one load (an ``asyncio.Lock``); a failed load raises to
    its callers and the next ``get()`` tries again. ``take()`` forgets the value (on close).
    """

    def __init__(self, load: Callable[[], T], executor: Executor) -> None:
        self._load = load
        self._executor = executor
        self._value: T | None = None
        self._lock = asyncio.Lock()

    @property
    def value(self) -> T | None:
        """The loaded value, or None while nothing is loaded."""
        return self._value

    async def get(self) -> T:
        async with self._lock:
            if self._value is None:
                loop = asyncio.get_running_loop()
                self._value = await loop.run_in_executor(self._executor, self._load)
            return self._value

    def take(self) -> T | None:
        value, self._value = self._value, None
        return value
