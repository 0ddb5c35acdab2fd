"""The experiment store on SQLite and on a real PostgreSQL: migrations, batched writes, reads,
restart, outage and back-pressure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from ensemble.config import StoreConfig
from ensemble.experiments.events import (
    CompletionEvent,
    EvalAnswer,
    FeedbackEvent,
    VerdictEvent,
)
from ensemble.experiments.store import (
    CompletionCost,
    ExperimentStore,
    FeedbackTally,
    VerdictCount,
)
from ensemble.experiments.store.migrate import head_revision
from ensemble.experiments.store.store import StoreUnavailable
from tests.experiments.conftest import sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    return url


async def _reset(url: str) -> None:
    if url.startswith("postgresql"):  # one server for the session: start each test empty
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            for table in ("eval_answers", "feedback", "verdicts", "completions",
                          "alembic_version"):
                await connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        await engine.dispose()


def completion(i: int, arm: str = "blend", role: str = "served") -> CompletionEvent:
    return CompletionEvent(id=f"c{i}", model=arm, role=role,  # type: ignore[arg-type]
                           experiment="assistant", arm=arm, latency_s=0.1 * (i + 1),
                           prompt_tokens=10, completion_tokens=20 + i,
                           members={"smollm2": {"candidates": 4, "latency_s": 0.5,
                                                "failures": 0}})


async def test_migrates_writes_and_reads_back(store_url: str) -> None:
    await _reset(store_url)
    store = await ExperimentStore.open(StoreConfig(url=store_url, flush_interval_s=0.05))
    try:
        for i in range(5):
            assert store.submit(completion(i))
        store.submit(VerdictEvent("assistant", "c0", "single", "blend", "win", 1.0, 0.5, "pairrm"))
        store.submit(VerdictEvent("assistant", "c1", "single", "blend", "tie", 0.5, 0.5, "pairrm"))
        store.submit(FeedbackEvent("fb-1", "c0", "blend", 1.0, "assistant", "blend", thumbs="up"))
        store.submit(EvalAnswer("k1", "run", "blend", "p1", "an answer", 1.5, 3, 4))
        store.submit(EvalAnswer("k1", "run", "blend", "p1", "a duplicate is skipped", 1, 1, 1))
        await store.flush()
        assert store.stats.written == 10 and store.stats.healthy

        rows = await store.completions("assistant")
        assert sorted(r[3] for r in rows) == [20, 21, 22, 23, 24]
        assert sorted(r.completion_tokens for r in rows) == [20, 21, 22, 23, 24]
        assert all(isinstance(r, CompletionCost) for r in rows)
        counts = await store.verdict_counts("assistant")
        assert all(isinstance(c, VerdictCount) for c in counts)
        assert sorted((c.outcome, c.verdicts) for c in counts) == [("tie", 1), ("win", 1)]
        (tally,) = await store.feedback_by("arm", "assistant")
        assert isinstance(tally, FeedbackTally)
        assert (tally.key, tally.votes, tally.mean_score) == ("blend", 1, 1.0)
        assert sorted(await store.verdict_counts("assistant")) == [
            ("single", "blend", "tie", 1), ("single", "blend", "win", 1)]
        assert await store.verdict_sequence("assistant", "blend") == ["loss", "tie"]
        assert await store.verdict_sequence("assistant", "single") == ["win", "tie"]
        assert [tuple(r) for r in await store.feedback_by("arm", "assistant")] == [
            ("blend", 1, 1.0)]
        cached = await store.eval_answers(["k1", "missing"])
        assert list(cached) == ["k1"] and cached["k1"].text == "an answer"
        ref = await store.completion("c3")
        assert ref is not None and (ref.model, ref.arm) == ("blend", "blend")
    finally:
        await store.aclose()


async def test_restart_keeps_the_data(store_url: str) -> None:
    await _reset(store_url)
    cfg = StoreConfig(url=store_url, flush_interval_s=0.05)
    store = await ExperimentStore.open(cfg)
    store.submit(completion(7))
    await store.aclose()  # flushes

    reopened = await ExperimentStore.open(cfg)  # migrations are a no-op the second time
    try:
        ref = await reopened.completion("c7")  # not in the new store's memory: from the DB
        assert ref is not None and ref.experiment == "assistant"
        engine = create_async_engine(store_url)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
            version = (await connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version")).scalar()
        await engine.dispose()
        assert {"completions", "verdicts", "feedback", "eval_answers"} <= set(tables)
        assert version == head_revision()
    finally:
        await reopened.aclose()


async def test_sqlite_default_lives_in_the_data_dir(tmp_path: Path) -> None:
    cfg = StoreConfig(data_dir=str(tmp_path / "data"), flush_interval_s=0.05)
    store = await ExperimentStore.open(cfg)
    store.submit(completion(1))
    await store.aclose()
    assert (tmp_path / "data" / "blendgate.db").is_file()


async def test_an_outage_is_counted_and_never_raised(tmp_path: Path) -> None:
    # A directory where the database file should be: every connection fails.
    blocked = tmp_path / "blocked.db"
    blocked.mkdir()
    store = await ExperimentStore.open(
        StoreConfig(url=f"sqlite+aiosqlite:///{blocked}", flush_interval_s=0.01))
    try:
        assert not store.stats.healthy
        for i in range(3):
            assert store.submit(completion(i))  # accepted; the write fails later
        await store.flush()
        assert store.stats.lost == 3 and store.stats.failed_batches >= 1
        assert store.stats.written == 0
        with pytest.raises(StoreUnavailable):
            await store.completions("assistant")
        # The feedback look-up still finds what this process served.
        assert await store.completion("c1") is not None
    finally:
        await store.aclose()


async def test_a_store_that_comes_up_late_starts_recording(tmp_path: Path) -> None:
    blocked = tmp_path / "late.db"
    blocked.mkdir()
    store = await ExperimentStore.open(
        StoreConfig(url=f"sqlite+aiosqlite:///{blocked}", flush_interval_s=0.01))
    try:
        store.submit(completion(1))
        await store.flush()
        assert store.stats.lost == 1
        blocked.rmdir()  # the "database" is back
        store.submit(completion(2))
        await store.flush()
        assert store.stats.written == 1 and store.stats.healthy
    finally:
        await store.aclose()


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    store = await ExperimentStore.open(
        StoreConfig(url=sqlite_url(tmp_path), queue_size=2, flush_interval_s=0.5))
    try:
        accepted = [store.submit(completion(i)) for i in range(5)]
        assert accepted.count(False) >= 2
        assert store.stats.dropped == accepted.count(False)
        await asyncio.wait_for(store.flush(), 5)
    finally:
        await store.aclose()
