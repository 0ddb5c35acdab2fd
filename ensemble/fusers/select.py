"""The ``type: none`` fuser: answer with the top-ranked candidate as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ensemble.errors import FuserError
from ensemble.types import ChatMessage, FuseStream, SamplingParams, TextDelta


class SelectFuser:
    """Streams ``candidates[0]`` (the best one) as a single delta; no model involved."""

    name = "none"

    async def fuse(
        self,
        messages: Sequence[ChatMessage],
        candidates: Sequence[str],
        params: SamplingParams,
    ) -> FuseStream:
        if not candidates:
            raise FuserError("select fuser: no candidate to answer with")
        return FuseStream(fuser=self.name, deltas=_one(candidates[0]))

    async def aclose(self) -> None:
        return None


async def _one(text: str) -> AsyncIterator[TextDelta]:
    yield TextDelta(text=text, index=0, finish_reason="stop")
