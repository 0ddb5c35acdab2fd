"""Cleanup that survives the caller's own cancellation.

When a client disconnects, the server cancels the request's task through an anyio cancel
scope, and anyio re-delivers that cancellation at EVERY ``await`` inside the scope, ``finally``
blocks included. A cleanup such as "cancel the fuse tasks, then wait for them to close their
upstream responses" is then interrupted at its first ``await``: the upstream generation keeps
running and its pooled connection is never released. Every such cleanup goes through
:func:`shielded`, which shields it (bounded by ``CLEANUP_LIMIT_S``, so a task that ignores
cancellation cannot hold the caller forever).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

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
