"""The engine, loaded in the background so the port opens at once.

``EngineLoading`` is started by the app's lifespan. Until the engine is built, ``/health``
answers 503 ``{"status": "loading"}`` and every route that needs a model answers 503 in
OpenAI's error shape with ``Retry-After``; once it is built, ``/health`` is 200. Loading logs
one line per component (from ``BlendEngine.from_config``) and one "ready" line with the
elapsed time. A load that fails is logged, ``/health`` says ``failed``, and ``on_failure``
(``blendgate serve`` stops the server with it) is called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, Protocol

from ensemble import Ranker
from ensemble.types import BlendRequest, BlendResult, ServedModel, StreamEnd, TextDelta
from gateway.errors import SERVER_ERROR, APIError

logger = logging.getLogger(__name__)

LoadState = Literal["loading", "ok", "failed"]
RETRY_AFTER_S = 5  # what a client is told to wait while models load


class Engine(Protocol):
    """What the gateway needs of ``ensemble.engine.BlendEngine`` (tests pass doubles)."""

    def models(self) -> list[ServedModel]: ...

    async def complete(self, request: BlendRequest) -> BlendResult: ...

    def stream(self, request: BlendRequest) -> AsyncIterator[TextDelta | StreamEnd]: ...

    def service_ranker(self) -> Ranker | None: ...

    async def aclose(self) -> None: ...


class EngineLoading:
    """Builds the engine once (``start``), hands it out when ready (``engine``)."""

    def __init__(
        self,
        build: Callable[[], Awaitable[Engine]] | None = None,
        *,
        engine: Engine | None = None,
        prepare: Callable[[Engine], Awaitable[None]] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Give ``build`` (this object owns and closes what it builds) or a ready ``engine``
        (the caller closes it). ``prepare(engine)`` runs before the engine is served (the
        experiments' judges load there)."""
        if (build is None) == (engine is None):
            raise ValueError("give exactly one of build or engine")
        self._build = build
        self._given = engine
        self._engine: Engine | None = None
        self._prepare = prepare
        self.on_failure = on_failure
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._finished = asyncio.Event()

    @property
    def state(self) -> LoadState:
        if self._engine is not None:
            return "ok"
        return "failed" if self.error is not None else "loading"

    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    async def start(self) -> None:
        """Start loading in the background; a given engine is prepared at once instead."""
        if self._task is not None or self._engine is not None:
            return
        self._started = time.monotonic()
        if self._given is not None:
            if self._prepare is not None:
                await self._prepare(self._given)
            self._engine = self._given
            self._finished.set()
            return
        assert self._build is not None
        self._task = asyncio.create_task(self._load(self._build), name="blendgate-load-models")

    async def wait(self) -> LoadState:
        """Wait until loading has succeeded or failed."""
        await self._finished.wait()
        return self.state

    def engine(self) -> Engine:
        """The engine, or a 503 that says why there is none yet."""
        if self._engine is not None:
            return self._engine
        if self.error is not None:
            raise APIError(503, "blendgate could not load its models; see the server log.",
                           type=SERVER_ERROR, code="model_load_failed")
        raise APIError(
            503, f"blendgate is still loading its models ({self.elapsed_s():.0f} s so far); "
                 f"retry in a few seconds.",
            type=SERVER_ERROR, code="model_not_ready",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def aclose(self) -> None:
        """Stop a load still running; close the engine if this object built it."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        engine, self._engine = self._engine, None
        if engine is not None and engine is not self._given:
            await engine.aclose()

    async def _load(self, build: Callable[[], Awaitable[Engine]]) -> None:
        engine: Engine | None = None
        try:
            engine = await build()
            if self._prepare is not None:
                await self._prepare(engine)
        except Exception as exc:  # noqa: BLE001 - reported here: nobody awaits this task
            self.error = exc
            self._finished.set()
            logger.error("loading the models failed after %.1f s: %s: %s",
                         self.elapsed_s(), type(exc).__name__, exc)
            if engine is not None:
                await engine.aclose()
            if self.on_failure is not None:
                self.on_failure(exc)
            return
        except BaseException:  # cancelled while loading: close what was built
            if engine is not None:
                await engine.aclose()
            raise
        self._engine = engine
        self._finished.set()
        logger.info("ready: %d models served, loaded in %.1f s",
                    len(engine.models()), self.elapsed_s())
