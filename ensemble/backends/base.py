"""The ``Backend`` protocol: one seam between the ensemble and any text generator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta


@runtime_checkable
class Backend(Protocol):
    """A chat model. Raises ``ensemble.errors.BackendError`` subclasses, nothing else."""

    name: str

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> list[Completion]:
        """Return ``n`` samples. OpenAI backends send ONE upstream request with ``n``."""
        ...

    def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> AsyncIterator[TextDelta]:
        """Yield text deltas (``index`` = sample) as they are generated; the last ones carry
        finish_reason and the call's usage."""
        ...

    async def aclose(self) -> None: ...
