"""The ``Ranker`` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ensemble.types import ChatMessage, Ranking


@runtime_checkable
class Ranker(Protocol):
    """Scores candidate answers to a conversation. Raises ``RankerError`` on model failure."""

    name: str

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        """Rank ``candidates`` as replies to ``messages`` (higher score / lower rank = better)."""
        ...

    async def aclose(self) -> None: ...
