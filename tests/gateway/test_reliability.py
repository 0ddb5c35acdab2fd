"""Reliability over the real stack: uvicorn + the real ``BlendEngine`` + fake HTTP upstreams.

The fuser is an ``llm`` fuser on an OpenAI backend, so the fuse stage holds a pooled upstream
connection while it streams; these tests check what happens to it when the client leaves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ensemble.config import BlendgateConfig, parse_config
from gateway.app import create_app
from tests.fixtures.fake_upstreams import FakeUpstreams
from tests.gateway.conftest import running_server

MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
STOPS = 70  # over the default max_connections (64): a leak would exhaust the pool


def _backend(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": url, "model": "fake", "expose": False,
            "timeout_s": 30, "connect_timeout_s": 1, **extra}


def reliability_config(up: FakeUpstreams, **ensemble: Any) -> BlendgateConfig:
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {
            "good": _backend(up.ok, expose=True),
            "stalling": _backend(up.stall_stream),
            "trickling": _backend(up.trickle),
            "stuck": _backend(up.hang),
        },
        "models": [
            {"type": "ensemble", "id": "fuse-stall", "ranker": {"type": "none"},
             "fuser": {"type": "llm", "backend": "stalling"},
             "members": [{"backend": "good", "samples": 2}], **ensemble},
        ],
    })


def wait_until(condition: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def first_content_then_hang_up(client: httpx.Client, model: str) -> bool:
    """Stream a blend, read until its first content chunk, then disconnect ("stop")."""
    with client.stream("POST", "/v1/chat/completions",
                       json={"model": model, "messages": MESSAGES, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                return True
    return False


@pytest.fixture
def stall_app(fake_upstreams: FakeUpstreams) -> FastAPI:
    return create_app(reliability_config(fake_upstreams))


@pytest.fixture
def stall_url(stall_app: FastAPI) -> Iterator[str]:
    with running_server(stall_app) as base:
        yield base


def fuse_pool_connections(app: FastAPI) -> int:
    """Connections the fuse backend's httpx pool still holds (open or in use)."""
    backend = app.state.engine._ensembles["fuse-stall"].fuser._backend
    return len(backend._client._transport._pool.connections)


def test_stop_during_fuse_stream_cancels_upstream_and_frees_the_pool(
    stall_app: FastAPI, stall_url: str, fake_upstreams: FakeUpstreams
) -> None:
    with httpx.Client(base_url=stall_url, timeout=10) as client:
        for i in range(STOPS):
            assert first_content_then_hang_up(client, "fuse-stall"), f"stop {i}: no content"
            assert wait_until(lambda i=i: fake_upstreams.stream_hangups == i + 1), (
                f"stop {i}: the fuse upstream never saw the hang-up "
                f"({fake_upstreams.stream_hangups} hang-ups, {fake_upstreams.streaming} open)")
        assert wait_until(lambda: fake_upstreams.streaming == 0)
        assert wait_until(lambda: fuse_pool_connections(stall_app) == 0), "a connection is held"
        # the backend still serves: a new blend gets its fused first token
        assert first_content_then_hang_up(client, "fuse-stall")
        assert wait_until(lambda: fake_upstreams.stream_hangups == STOPS + 1)
