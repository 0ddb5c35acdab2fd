"""Gateway test fixtures: a scripted engine double, a small config, app clients.

The double implements ``BlendEngine``'s interface exactly (models / complete / stream /
service_ranker / aclose) and records what it was asked and whether a stream was cancelled,
so wire-format and error tests need no model.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ensemble.errors import UnknownModelError
from ensemble.rankers.base import Ranker
from ensemble.types import (
    BlendReport,
    BlendRequest,
    BlendResult,
    Candidate,
    Choice,
    MemberFailure,
    Ranking,
    ServedModel,
    StageTimings,
    StreamEnd,
    TextDelta,
    Usage,
)
from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.state import gateway_state

ENSEMBLE = "blend"
SINGLE = "alpha"


def make_config(**server: object) -> GatewayConfig:
    return parse_config(
        {
            "server": {"api_keys_env": None, "max_n": 4, "max_candidates": 9, **server},
            "backends": {
                "alpha": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"},
                "beta": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "b",
                         "expose": False},
            },
            "models": [
                {"type": "ensemble", "id": ENSEMBLE, "members": [{"backend": "alpha", "samples": 2},
                                              {"backend": "beta"}]},
            ],
        }
    )


def prompt_tokens(request: BlendRequest) -> int:
    return sum(len(m.content.split()) for m in request.messages)


@dataclass
class ScriptedEngine:
    """Answers ``"<reply> <choice index>"`` word by word; may fail before or mid-stream."""

    reply: str = "blended answer number"
    fail: Exception | None = None  # raised by complete(), or by stream() after fail_after deltas
    fail_after: int = 0
    delta_delay_s: float = 0.0
    complete_delay_s: float = 0.0
    stream_delay_s: float = 0.0  # before the first delta, like a fan-out
    requests: list[BlendRequest] = field(default_factory=list)
    # threading events: the engine may run on a uvicorn thread's loop while the test waits.
    stream_started: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def models(self) -> list[ServedModel]:
        return [ServedModel(ENSEMBLE, "ensemble", ("alpha", "beta")),
                ServedModel(SINGLE, "single", ("alpha",))]

    def service_ranker(self) -> Ranker | None:
        return None

    async def aclose(self) -> None:
        self.closed = True

    def _check(self, request: BlendRequest) -> None:
        self.requests.append(request)
        if request.model not in {m.id for m in self.models()}:
            raise UnknownModelError(request.model)

    def texts(self, request: BlendRequest) -> list[str]:
        return [f"{self.reply} {i}" for i in range(request.n)]

    def report(self, request: BlendRequest) -> BlendReport | None:
        if request.model != ENSEMBLE:
            return None
        return BlendReport(
            candidates=[Candidate("alpha", 0, "cand a0", "stop", 0.25),
                        Candidate("alpha", 1, "cand a1", "length", 0.5)],
            ranking=Ranking(scores=(0.9, 0.1), ranks=(1, 2)),
            failures=[MemberFailure("beta", "BackendConnectError", "connection refused", 0.01)],
            fuser="llm:alpha",
            timings=StageTimings(fanout_s=0.5, rank_s=0.125, fuse_s=0.25, total_s=0.875),
        )

    def usage(self, request: BlendRequest) -> Usage:
        return Usage(prompt_tokens(request), sum(len(t.split()) for t in self.texts(request)))

    async def complete(self, request: BlendRequest) -> BlendResult:
        self._check(request)
        try:
            await asyncio.sleep(self.complete_delay_s)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.fail is not None:
            raise self.fail
        choices = [Choice(i, t, "stop") for i, t in enumerate(self.texts(request))]
        return BlendResult(request.model, choices, self.usage(request), self.report(request))

    async def stream(self, request: BlendRequest) -> AsyncIterator[TextDelta | StreamEnd]:
        self._check(request)
        sent = 0
        try:
            await asyncio.sleep(self.stream_delay_s)
            for index, text in enumerate(self.texts(request)):
                words = text.split(" ")
                for w, word in enumerate(words):
                    if self.fail is not None and sent == self.fail_after:
                        raise self.fail
                    last = w == len(words) - 1
                    yield TextDelta(word if w == 0 else " " + word, index,
                                    finish_reason="stop" if last else None)
                    sent += 1
                    self.stream_started.set()
                    await asyncio.sleep(self.delta_delay_s)
            yield StreamEnd(self.usage(request), self.report(request))
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def config() -> GatewayConfig:
    return make_config()


@pytest.fixture
def app(config: GatewayConfig, engine: ScriptedEngine) -> FastAPI:
    return create_app(config, engine=engine)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the app in-process (lifespan run around it)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: FastAPI, startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL.

    It returns once the engine's models are loaded (the lifespan loads them in the
    background) or failed to load.
    """
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout_s
        state = gateway_state(app)  # None: not a blendgate app
        loading = state.loading if state is not None else None
        while not server.started or (loading is not None and loading.state == "loading"):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start (see the log above)")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    with running_server(app) as url:
        yield url
