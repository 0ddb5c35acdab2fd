"""Interleave several fuse streams (the ``n`` choices of one answer) as their deltas arrive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from ensemble.concurrency import cancel_and_wait, closing
from ensemble.deadline import Deadline, within
from ensemble.errors import FuserError, OverloadedError
from ensemble.types import FuseStream, TextDelta


async def merge_streams(
    streams: Sequence[FuseStream], deadline: Deadline | None = None
) -> AsyncIterator[tuple[int, TextDelta]]:
    """(choice index, delta) from every stream, in arrival order.

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
            async with within(deadline, "fusing"):
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
