"""The ``Fuser`` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ensemble.types import ChatMessage, FuseStream, SamplingParams


@runtime_checkable
class Fuser(Protocol):
    """Turns the top-k ranked candidates (best first) into one answer, streamed."""

    name: str

    async def fuse(
        self,
        messages: Sequence[ChatMessage],
        candidates: Sequence[str],
        params: SamplingParams,
    ) -> FuseStream:
        """Choose how to fuse (e.g. GenFuser or its fallback) and start; the returned
        ``FuseStream.fuser`` names the fuser that actually produces the text."""
        ...

    async def aclose(self) -> None: ...
