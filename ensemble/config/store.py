"""``store:``: where experiment events are written."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ensemble.config.base import StrictModel


class StoreConfig(StrictModel):
    """Where experiment events go: SQLite in ``data_dir`` by default, or any SQLAlchemy URL
    (``postgresql+asyncpg://...`` for several gateway replicas)."""

    url: str | None = None
    data_dir: str = "data"
    queue_size: int = Field(10_000, ge=1)  # events waiting to be written; more are dropped
    batch_size: int = Field(256, ge=1)
    flush_interval_s: float = Field(0.5, gt=0)

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return f"sqlite+aiosqlite:///{Path(self.data_dir) / 'blendgate.db'}"
