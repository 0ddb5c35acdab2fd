"""``ExperimentStore``: experiment events into SQL, batched and off the request path.

``submit(event)`` never waits and never raises: the event goes into a bounded queue (full: it is
dropped and counted) and one writer task inserts batches of up to ``batch_size`` events, at most
``flush_interval_s`` after the first one arrived, in one transaction. A batch that fails (the
database is down, a disk is full) is lost and counted, and the store reports itself unhealthy
until a batch goes through again; nothing of it reaches the request that produced the events.
The schema is migrated at open; when the database cannot be reached then, the writer retries
the migration before each batch, so a store that comes up late starts recording by itself.

Reads (statistics, the feedback look-up, the eval cache) go to the database and raise
``StoreUnavailable`` when it cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ensemble.config import StoreConfig
from ensemble.errors import BlendError
from ensemble.experiments.events import (
    CompletionEvent,
    EvalAnswer,
    Event,
    FeedbackEvent,
    VerdictEvent,
)
from ensemble.experiments.store.migrate import upgrade_to_head
from ensemble.experiments.store.rows import (
    CompletionCost,
    CompletionRef,
    FeedbackTally,
    VerdictCount,
)
from ensemble.experiments.store.schema import (
    CompletionRow,
    EvalAnswerRow,
    FeedbackRow,
    VerdictRow,
)

logger = logging.getLogger(__name__)

_TABLES: dict[type, Table] = {
    CompletionEvent: CompletionRow.__table__,  # type: ignore[dict-item]
    VerdictEvent: VerdictRow.__table__,  # type: ignore[dict-item]
    FeedbackEvent: FeedbackRow.__table__,  # type: ignore[dict-item]
    EvalAnswer: EvalAnswerRow.__table__,  # type: ignore[dict-item]
}
_RECENT = 10_000  # completions remembered in memory for feedback that arrives before the write


class StoreUnavailable(BlendError):
    """The store could not answer a read."""


@dataclass
class StoreStats:
    """Counters behind ``/metrics`` (read at scrape time)."""

    written: int = 0  # events committed
    dropped: int = 0  # events refused because the queue was full
    lost: int = 0  # events in batches that failed to write
    failed_batches: int = 0
    healthy: bool = True  # the last write (or the open) succeeded


class ExperimentStore:
    """Open with ``await ExperimentStore.open(cfg)``; ``aclose()`` flushes what is queued."""

    def __init__(self, engine: AsyncEngine, cfg: StoreConfig) -> None:
        self._engine = engine
        self._cfg = cfg
        self._queue: asyncio.Queue[Event] = asyncio.Queue(cfg.queue_size)
        self._recent: OrderedDict[str, CompletionRef] = OrderedDict()
        self._migrated = False
        self._writer: asyncio.Task[None] | None = None
        self.stats = StoreStats()
        self.url = engine.url.render_as_string(hide_password=True)

    @classmethod
    async def open(cls, cfg: StoreConfig) -> ExperimentStore:
        url = make_url(cfg.resolved_url())
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        engine = create_async_engine(url, pool_pre_ping=True)
        if url.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine, cfg)
        try:
            await store._migrate()
        except Exception as exc:  # noqa: BLE001 - the gateway serves anyway; writer retries
            store._mark_unhealthy(f"cannot open the store at {store.url}", exc)
        store._writer = asyncio.create_task(store._run(), name="experiment-store-writer")
        return store

    # ------------------------------------------------------------------ writes

    def submit(self, item: Event) -> bool:
        """Queue ``item`` for writing; False (and counted) when the queue is full."""
        if isinstance(item, CompletionEvent):
            self._remember(CompletionRef(item.id, item.model, item.experiment, item.arm))
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        return True

    async def flush(self) -> None:
        """Wait until everything submitted so far was written (or lost)."""
        await self._queue.join()

    def queued(self) -> int:
        return self._queue.qsize()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout_s)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._engine.dispose()

    async def _migrate(self) -> None:
        await upgrade_to_head(self._engine)
        self._migrated = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self._cfg.flush_interval_s
            while len(batch) < self._cfg.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - an outage is counted, never raised
                self.stats.failed_batches += 1
                self.stats.lost += len(batch)
                self._mark_unhealthy(f"lost {len(batch)} experiment events", exc)
            else:
                self.stats.written += len(batch)
                if not self.stats.healthy:
                    logger.warning("experiment store %s is writing again", self.url)
                self.stats.healthy = True
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: Sequence[Event]) -> None:
        if not self._migrated:
            await self._migrate()
        rows: dict[type, list[dict[str, Any]]] = {}
        for item in batch:
            rows.setdefault(type(item), []).append(asdict(item))
        async with self._engine.begin() as connection:
            for kind, values in rows.items():
                await connection.execute(self._insert(_TABLES[kind]), values)

    def _insert(self, table: Table) -> Any:
        """INSERT that skips rows whose key exists (a resumed eval re-sends a cached answer)."""
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing()
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        return insert(table)

    def _mark_unhealthy(self, what: str, exc: Exception) -> None:
        if self.stats.healthy:  # log on the transition, not on every batch of an outage
            logger.warning("experiment store %s: %s: %s: %s", self.url, what,
                           type(exc).__name__, exc)
        self.stats.healthy = False

    def _remember(self, ref: CompletionRef) -> None:
        self._recent[ref.id] = ref
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    # ------------------------------------------------------------------ reads

    async def completion(self, completion_id: str) -> CompletionRef | None:
        """The completion a vote is for: remembered here, else looked up (other replicas)."""
        ref = self._recent.get(completion_id)
        if ref is not None:
            return ref
        table = CompletionRow.__table__
        query = select(table.c.id, table.c.model, table.c.experiment, table.c.arm).where(
            table.c.id == completion_id)
        rows = await self._read(query)
        return CompletionRef(*rows[0]) if rows else None

    async def completions(self, experiment: str, role: str = "served") -> list[CompletionCost]:
        """Arm, latency and tokens of an experiment's answered requests in ``role``."""
        table = CompletionRow.__table__
        query = select(table.c.arm, table.c.latency_s, table.c.prompt_tokens,
                       table.c.completion_tokens).where(
            table.c.experiment == experiment, table.c.role == role, table.c.status == "ok")
        return [CompletionCost(*row) for row in await self._read(query)]

    async def verdict_counts(self, experiment: str) -> list[VerdictCount]:
        """How often each arm got each outcome against each baseline, in an experiment."""
        table = VerdictRow.__table__
        query = select(table.c.arm, table.c.baseline_arm, table.c.outcome,
                       func.count()).where(table.c.experiment == experiment).group_by(
            table.c.arm, table.c.baseline_arm, table.c.outcome)
        return [VerdictCount(*row) for row in await self._read(query)]

    async def verdict_sequence(self, experiment: str, arm: str) -> list[str]:
        """Outcomes for ``arm`` (from its side) in the order they were judged."""
        table = VerdictRow.__table__
        query = select(table.c.arm, table.c.outcome).where(
            table.c.experiment == experiment,
            (table.c.arm == arm) | (table.c.baseline_arm == arm),
        ).order_by(table.c.created_at, table.c.id)
        flip = {"win": "loss", "loss": "win", "tie": "tie"}
        return [o if a == arm else flip[o] for a, o in await self._read(query)]

    async def feedback_by(self, column: str, experiment: str | None = None
                          ) -> list[FeedbackTally]:
        """Votes and mean score of feedback grouped by ``column``: ``arm`` or ``model``."""
        table = FeedbackRow.__table__
        key = table.c[column]
        query = select(key, func.count(), func.avg(table.c.score)).group_by(key)
        if experiment is not None:
            query = query.where(table.c.experiment == experiment)
        return [FeedbackTally(*row) for row in await self._read(query)]

    async def eval_answers(self, keys: Iterable[str]) -> dict[str, EvalAnswer]:
        wanted = list(keys)
        found: dict[str, EvalAnswer] = {}
        table = EvalAnswerRow.__table__
        for start in range(0, len(wanted), 500):  # stay under SQL parameter limits
            query = select(table).where(table.c.key.in_(wanted[start:start + 500]))
            for row in await self._read(query):
                found[row.key] = EvalAnswer(**row._asdict())
        return found

    async def _read(self, query: Any) -> Any:
        try:
            if not self._migrated:
                await self._migrate()
            async with self._engine.connect() as connection:
                return (await connection.execute(query)).all()
        except Exception as exc:
            raise StoreUnavailable(
                f"the experiment store cannot answer: {type(exc).__name__}: {exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the statistics read while the writer commits; NORMAL sync is safe under WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
