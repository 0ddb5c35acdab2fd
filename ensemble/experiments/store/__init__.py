"""The experiment store: SQLAlchemy 2 (async) over SQLite (aiosqlite) or PostgreSQL (asyncpg),
schema managed by Alembic migrations that run at open."""

from ensemble.experiments.store.rows import (
    CompletionCost,
    CompletionRef,
    FeedbackTally,
    VerdictCount,
)
from ensemble.experiments.store.store import ExperimentStore, StoreStats

__all__ = [
    "CompletionCost",
    "CompletionRef",
    "ExperimentStore",
    "FeedbackTally",
    "StoreStats",
    "VerdictCount",
]
