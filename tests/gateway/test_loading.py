"""Start-up: the port answers while the models load; /health says "loading" before "ok".

``create_app(build_engine=...)`` gets a build that waits for the test, so each state is seen
for sure; the log test builds the real ``BlendEngine`` over the fake upstreams.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ensemble.errors import ConfigError
from gateway.app import create_app
from gateway.cli import EXIT_CONFIG
from gateway.config import GatewayConfig, parse_config
from gateway.loading import Engine, EngineLoading
from gateway.state import state_of
from gateway.testing import FakeUpstreams
from tests.gateway.conftest import ENSEMBLE, ScriptedEngine

CHAT = {"model": ENSEMBLE, "messages": [{"role": "user", "content": "hi"}]}


class GatedBuild:
    """An engine build that finishes (or fails) only when the test says so."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.fail = fail
        self.engine = ScriptedEngine()

    async def __call__(self, config: GatewayConfig) -> Engine:
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return self.engine


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        yield client


async def test_health_is_loading_then_ok_and_models_503_until_ready(
    config: GatewayConfig,
) -> None:
    build = GatedBuild()
    app = create_app(config, build_engine=build, load_in_background=True)
    async for client in client_for(app):
        health = await client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "loading"
        assert health.json()["elapsed_s"] >= 0
        for response in (await client.post("/v1/chat/completions", json=CHAT),
                         await client.get("/v1/models")):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["code"] == "model_not_ready"
            assert "still loading" in error["message"]

        build.release.set()
        assert await state_of(app).loading.wait() == "ok"
        health = await client.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok", "models_loaded": 2})
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert build.engine.closed  # built by the app, so closed by it


async def test_failed_load_is_reported_and_calls_on_failure(config: GatewayConfig) -> None:
    build = GatedBuild(fail=ConfigError("no such model file", key="backends.x"))
    app = create_app(config, build_engine=build, load_in_background=True)
    loading: EngineLoading = state_of(app).loading
    seen: list[BaseException] = []
    loading.on_failure = seen.append
    async for client in client_for(app):
        build.release.set()
        assert await loading.wait() == "failed"
        health = await client.get("/health")
        assert (health.status_code, health.json()) == (503, {"status": "failed"})
        chat = await client.post("/v1/chat/completions", json=CHAT)
        assert chat.status_code == 503
        assert chat.json()["error"]["code"] == "model_load_failed"
    assert seen == [build.fail]


def real_config(up: FakeUpstreams) -> GatewayConfig:
    backend = {"kind": "openai", "base_url": up.ok, "model": "fake"}
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {"good": backend, "other": {**backend, "expose": False}},
        "models": [{"type": "ensemble", "id": "duo", "ranker": {"type": "none"},
                    "fuser": {"type": "none"},
                    "members": [{"backend": "good"}, {"backend": "other"}]}],
    })


async def test_one_log_line_per_component_and_a_ready_line(
    fake_upstreams: FakeUpstreams, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(real_config(fake_upstreams), load_in_background=True)
    async for _ in client_for(app):
        assert await state_of(app).loading.wait() == "ok"
    lines = [r.getMessage() for r in caplog.records
             if r.name in ("ensemble.engine", "gateway.loading")]
    loaded = sorted(line.split(" in ")[0] for line in lines if line.startswith("loaded "))
    assert loaded == ["loaded backend good", "loaded backend other", "loaded fuser none of duo",
                      "loaded ranker none of duo"]
    ready = [line for line in lines if line.startswith("ready: ")]
    assert len(ready) == 1
    assert ready[0].startswith("ready: 2 models served, loaded in ")
    assert ready[0].endswith(" s")


def test_serve_exits_2_when_a_model_cannot_load(tmp_path: Path) -> None:
    config = tmp_path / "missing-model.yaml"
    config.write_text(
        "backends:\n  local: {kind: local, runtime: llamacpp, model: /nonexistent/model.gguf}\n",
        encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", "0"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "blendgate: config error:" in result.stderr
    assert "/nonexistent/model.gguf" in result.stderr


async def test_without_background_loading_start_up_waits_and_fails(
    config: GatewayConfig,
) -> None:
    build = GatedBuild(fail=ConfigError("no such model file", key="backends.x"))
    build.release.set()
    app = create_app(config, build_engine=build)
    with pytest.raises(ConfigError, match="no such model file"):
        async with app.router.lifespan_context(app):
            pass
