"""BatchWorker: size-or-deadline batching on one dedicated thread, per ensemble/compute.py."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence

import pytest

from ensemble.compute import BatchWorker, TorchThreads
from ensemble.errors import OverloadedError


class Recorder:
    """A ``process`` function that records each batch and the thread it ran on."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.release.wait(5)
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        return [item * 10 for item in items]


async def test_concurrent_submits_run_as_one_batch_off_the_event_loop() -> None:
    recorder = Recorder()
    worker: BatchWorker[int, int] = BatchWorker(recorder, name="t", max_batch_size=8,
                                                max_wait_ms=50)
    try:
        results = await asyncio.gather(*(worker.submit(i) for i in range(5)))
    finally:
        await worker.aclose()
    assert results == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    assert recorder.threads == {next(iter(recorder.threads))}
    assert threading.main_thread().name not in recorder.threads
    assert next(iter(recorder.threads)).startswith("blendgate-t")


async def test_weights_bound_rows_and_a_heavy_item_runs_alone() -> None:
    recorder = Recorder()
    worker: BatchWorker[int, int] = BatchWorker(recorder, name="w", max_batch_size=6,
                                                max_wait_ms=50, weight=lambda item: item)
    try:
        # weights 3 + 3 fill one batch; 4 does not fit beside them; 9 exceeds the limit alone
        results = await asyncio.gather(*(worker.submit(i) for i in (3, 3, 4, 9)))
    finally:
        await worker.aclose()
    assert results == [30, 30, 40, 90]
    assert recorder.batches == [[3, 3], [4], [9]]


async def test_a_model_error_reaches_every_waiter_of_the_batch_and_the_worker_goes_on() -> None:
    calls = 0

    def process(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("CUDA out of memory")
        return list(items)

    worker: BatchWorker[int, int] = BatchWorker(process, name="e", max_wait_ms=50)
    try:
        outcomes = await asyncio.gather(worker.submit(1), worker.submit(2),
                                        return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert await worker.submit(3) == 3
    finally:
        await worker.aclose()


async def test_items_cancelled_before_their_batch_starts_are_dropped() -> None:
    recorder = Recorder()
    recorder.release.clear()  # hold the first batch on the device thread
    worker: BatchWorker[int, int] = BatchWorker(recorder, name="c", max_wait_ms=1)
    try:
        first = asyncio.create_task(worker.submit(1))
        await asyncio.sleep(0.05)  # batch [1] is running (blocked)
        doomed = asyncio.create_task(worker.submit(2))
        kept = asyncio.create_task(worker.submit(3))
        await asyncio.sleep(0.01)
        doomed.cancel()
        recorder.release.set()
        assert await first == 10
        assert await kept == 30
    finally:
        await worker.aclose()
    assert [2] not in recorder.batches and all(2 not in b for b in recorder.batches)


async def test_a_full_queue_is_overloaded_not_unbounded() -> None:
    recorder = Recorder()
    recorder.release.clear()
    worker: BatchWorker[int, int] = BatchWorker(recorder, name="q", max_batch_size=1,
                                                max_wait_ms=0, max_queue=2)
    tasks = [asyncio.create_task(worker.submit(0))]
    await asyncio.sleep(0.05)  # item 0 is on the device thread; the queue is empty again
    tasks += [asyncio.create_task(worker.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    try:
        with pytest.raises(OverloadedError):
            await worker.submit(3)
    finally:
        recorder.release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.aclose()


async def test_load_closes_the_worker_when_the_model_fails_to_load() -> None:
    worker: BatchWorker[int, int] = BatchWorker(Recorder(), name="l")

    def broken() -> None:
        raise OSError("no such checkpoint")

    with pytest.raises(OSError):
        await worker.load(broken)
    with pytest.raises(RuntimeError):  # the executor was shut down with the worker
        await worker.run(lambda: 1)
    healthy: BatchWorker[int, int] = BatchWorker(Recorder(), name="ok")
    try:
        assert await healthy.load(lambda: 7) == 7
    finally:
        await healthy.aclose()


class RowRecorder:
    """``process`` over jobs that are tuples of rows: records each batch's (job tag, rows)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, jobs: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
        self.release.wait(5)
        self.batches.append([(job[0], len(job)) for job in jobs])
        return [tuple(r.upper() for r in job) for job in jobs]


def _rows_worker(recorder: RowRecorder) -> BatchWorker[tuple[str, ...], tuple[str, ...]]:
    return BatchWorker(
        recorder, name="fair", max_batch_size=8, max_wait_ms=0, weight=len,
        split=lambda job, rows: [job[i : i + rows] for i in range(0, len(job), rows)],
        join=lambda parts: tuple(r for part in parts for r in part))


async def test_a_huge_job_delays_a_later_small_one_by_at_most_one_batch() -> None:
    recorder = RowRecorder()
    recorder.release.clear()  # hold the device thread until both jobs are queued
    worker = _rows_worker(recorder)
    try:
        huge = asyncio.create_task(worker.submit(("h",) * 100))
        await asyncio.sleep(0.05)  # the first chunk of the huge job is on the thread
        small = asyncio.create_task(worker.submit(("s",) * 3))
        await asyncio.sleep(0.01)
        recorder.release.set()
        assert await small == ("S",) * 3
        assert await huge == ("H",) * 100  # its chunks joined back, in order
    finally:
        await worker.aclose()
    assert all(sum(rows for _, rows in batch) <= 8 for batch in recorder.batches)
    small_batch = next(i for i, b in enumerate(recorder.batches) if ("s", 3) in b)
    assert small_batch <= 1  # behind at most the one huge chunk already running


async def test_waiting_jobs_share_batches_round_robin() -> None:
    recorder = RowRecorder()
    recorder.release.clear()
    worker = _rows_worker(recorder)
    try:
        blocker = asyncio.create_task(worker.submit(("b",)))
        await asyncio.sleep(0.05)
        jobs = [asyncio.create_task(worker.submit((tag,) * 40)) for tag in "xyz"]
        await asyncio.sleep(0.01)
        recorder.release.set()
        await asyncio.gather(blocker, *jobs)
    finally:
        await worker.aclose()
    # every batch after the blocker serves the three jobs in turn until they run out
    tags = [tag for batch in recorder.batches[1:] for tag, _ in batch]
    firsts = [tags.index(t) for t in "xyz"]
    assert max(firsts) <= 2, recorder.batches


# ---------------------------------------------------------------------- torch's thread count


@pytest.fixture
def torch_threads() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("torch_threads")
def test_the_largest_torch_thread_request_wins_and_a_smaller_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    owner = TorchThreads()
    assert owner.granted == 0
    assert owner.request(1, "pairrm ranker") == 1 and torch.get_num_threads() == 1
    assert owner.request(2, "genfuser") == 2 and torch.get_num_threads() == 2
    with caplog.at_level(logging.WARNING, logger="ensemble.compute"):
        assert owner.request(1, "backend tiny") == 2
    assert torch.get_num_threads() == 2 and owner.granted == 2
    assert "backend tiny asks for 1 torch threads; keeping 2 (asked by genfuser)" in caplog.text
