"""The async helpers: thread -> loop hand-off, load-once, all-or-nothing gathers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ensemble.concurrency import LoadOnce, ThreadFeed, gather_or_cancel


async def test_thread_feed_carries_items_from_a_worker_thread_in_order() -> None:
    feed: ThreadFeed[int] = ThreadFeed()
    worker = threading.Thread(target=lambda: [feed.put(i) for i in range(5)])
    worker.start()
    got = [await asyncio.wait_for(feed.get(), 5) for _ in range(5)]
    worker.join()
    assert got == [0, 1, 2, 3, 4] and feed.empty()


def test_thread_feed_drops_items_once_its_loop_has_closed() -> None:
    loop = asyncio.new_event_loop()
    feed: ThreadFeed[int] = loop.run_until_complete(_make_feed())
    loop.close()
    feed.put(1)  # no RuntimeError reaches the worker thread
    assert feed.empty()


async def _make_feed() -> ThreadFeed[int]:
    return ThreadFeed()


async def test_load_once_loads_on_its_executor_once_for_concurrent_callers() -> None:
    threads: list[str] = []

    def load() -> str:
        threads.append(threading.current_thread().name)
        return "model"

    with ThreadPoolExecutor(1, thread_name_prefix="loader") as executor:
        once = LoadOnce(load, executor)
        assert once.value is None
        assert await asyncio.gather(*(once.get() for _ in range(4))) == ["model"] * 4
        assert len(threads) == 1 and threads[0].startswith("loader")
        assert once.take() == "model" and once.value is None
        assert await once.get() == "model" and len(threads) == 2  # loads again after take


async def test_load_once_retries_after_a_failed_load() -> None:
    calls: list[int] = []

    def load() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk")
        return 7

    with ThreadPoolExecutor(1) as executor:
        once = LoadOnce(load, executor)
        with pytest.raises(OSError):
            await once.get()
        assert await once.get() == 7


async def test_gather_or_cancel_cancels_the_rest_on_the_first_failure() -> None:
    cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    async def fail() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await gather_or_cancel([slow(), fail()])
    assert cancelled.is_set()
    assert await gather_or_cancel([asyncio.sleep(0, result=i) for i in range(3)]) == [0, 1, 2]
