"""The ``type: none`` ranker: keep the members' order (first member's first sample first)."""

from __future__ import annotations

from collections.abc import Sequence

from ensemble.types import ChatMessage, Ranking


class PassthroughRanker:
    """Ranks candidates in the order the fan-out produced them; costs nothing."""

    name = "none"

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        count = len(candidates)
        return Ranking(
            scores=tuple(float(count - i) for i in range(count)),
            ranks=tuple(range(1, count + 1)),
        )

    async def aclose(self) -> None:
        return None
