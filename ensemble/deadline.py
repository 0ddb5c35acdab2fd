"""One request's ``deadline_s``: an ensemble's, shared by fan-out, ranking and fusing, or a
pass-through model's.

``Deadline.bound(stage)`` runs a block under it and turns its expiry into
``DeadlineExceeded``. Each await is bounded on its own (never a scope spanning a ``yield``,
which would cancel whatever the consumer is doing), so a stream that trickles tokens is cut
too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass

from ensemble.config import EnsembleModelConfig
from ensemble.errors import DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    """A point in loop time; create it on the loop that awaits under it."""

    at: float  # loop time
    seconds: float
    fallback: bool  # on_deadline: best_candidate

    @classmethod
    def start(cls, cfg: EnsembleModelConfig) -> Deadline:
        """An ensemble's deadline, from now."""
        return cls.after(cfg.deadline_s, fallback=cfg.on_deadline == "best_candidate")

    @classmethod
    def after(cls, seconds: float, *, fallback: bool = False) -> Deadline:
        return cls(asyncio.get_running_loop().time() + seconds, seconds, fallback)

    def left_s(self) -> float:
        return max(0.0, self.at - asyncio.get_running_loop().time())

    @asynccontextmanager
    async def bound(self, stage: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout_at(self.at):
                yield
        except TimeoutError as exc:
            if self.left_s() > 0:
                raise  # someone else's timeout
            raise DeadlineExceeded(f"deadline of {self.seconds:g}s passed while {stage}") from exc


def within(deadline: Deadline | None, stage: str) -> AbstractAsyncContextManager[None]:
    """``deadline.bound(stage)``; no bound at all without a deadline."""
    return nullcontext() if deadline is None else deadline.bound(stage)
