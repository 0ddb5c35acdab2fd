"""``FallbackBackend``: a single model's backend followed by its fallbacks, as one ``Backend``.

A call goes to the first backend; when that fails *before its first token* with one of the
configured triggers (``SingleModelConfig.fallback_on``), it goes to the next, and so on. What a
backend already streamed is never thrown away: a failure after the first delta is raised as
it is (the gateway sends one error event and ``[DONE]``). A client error (HTTP 4xx other than
429) is the request's fault, so it is raised at once: another backend would reject it too.

Every completion and delta carries ``backend``, the name of the backend that answered, so the
gateway can say who did (``x-blendgate-backend``, the ``blend`` field, a metric).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import replace

from ensemble.backends.base import Backend
from ensemble.concurrency import closing
from ensemble.config.models import FallbackTrigger, SingleModelConfig
from ensemble.errors import (
    BackendConnectError,
    BackendProtocolError,
    BackendStatusError,
    BackendTimeout,
    BlendError,
    OverloadedError,
)
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta

logger = logging.getLogger(__name__)


def trigger_of(error: BlendError) -> FallbackTrigger | None:
    """The ``fallback_on`` class of a backend failure; None for one that never falls back."""
    if isinstance(error, BackendConnectError):
        return "connect"
    if isinstance(error, BackendTimeout):
        return "timeout"
    if isinstance(error, BackendProtocolError):
        return "dropped"
    if isinstance(error, OverloadedError):
        return "overloaded"
    if isinstance(error, BackendStatusError):
        if error.status == 429:
            return "429"
        return "5xx" if error.status >= 500 else None
    return None


class FallbackBackend:
    """``backends[0]``, then the others in order (see the module docstring)."""

    def __init__(self, backends: Sequence[Backend], triggers: Collection[FallbackTrigger]) -> None:
        if not backends:
            raise ValueError("a fallback chain needs at least one backend")
        self._chain = tuple(backends)
        self._triggers = frozenset(triggers)
        self.name = self._chain[0].name

    def __repr__(self) -> str:
        return f"FallbackBackend({[b.name for b in self._chain]!r})"

    def _falls_back(self, error: BlendError, backend: Backend, position: int) -> bool:
        """Whether ``error`` from ``backend`` moves the call on; logs the move."""
        trigger = trigger_of(error)
        if trigger not in self._triggers or position == len(self._chain) - 1:
            return False
        logger.warning("backend %s failed before its first token (%s: %s); trying %s",
                       backend.name, trigger, type(error).__name__,
                       self._chain[position + 1].name)
        return True

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> list[Completion]:
        for position, backend in enumerate(self._chain):
            try:
                completions = await backend.complete(messages, params, n)
            except BlendError as exc:
                if not self._falls_back(exc, backend, position):
                    raise
                continue
            return [replace(c, backend=backend.name) for c in completions]
        raise AssertionError("unreachable: the last backend's failure is raised")

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> AsyncIterator[TextDelta]:
        for position, backend in enumerate(self._chain):
            async with closing(backend.stream(messages, params, n)) as deltas:
                try:
                    first = await anext(deltas, None)
                except BlendError as exc:
                    if not self._falls_back(exc, backend, position):
                        raise
                    continue
                if first is not None:
                    yield replace(first, backend=backend.name)
                    async for delta in deltas:  # from here on a failure is the answer's
                        yield replace(delta, backend=backend.name)
                return

    async def aclose(self) -> None:
        """Nothing to close: the engine owns (and closes) every backend in the chain."""


def single_backend(model: SingleModelConfig, backends: Mapping[str, Backend]) -> Backend:
    """The backend serving a ``type: single`` model: its own, or a chain with its fallbacks."""
    if not model.fallbacks:
        return backends[model.backend]
    return FallbackBackend([backends[name] for name in (model.backend, *model.fallbacks)],
                           model.fallback_on)
