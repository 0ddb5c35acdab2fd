"""Access log, ``x-request-id`` and the Prometheus exposition (process metrics, in-flight,
time to first token, tokens, build info, zero-initialised member failures, no ``_created``)."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.cli import server_config
from gateway.config import GatewayConfig
from gateway.settings import package_version
from gateway.state import state_of
from tests.gateway.conftest import ENSEMBLE, SINGLE, ScriptedEngine

SECRET = "SECRET-PROMPT-TEXT-42"
MESSAGES = [{"role": "user", "content": f"Please keep this private: {SECRET}"}]


def access_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "blendgate.access" and r.levelno == level]


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))


async def test_one_access_line_per_request_with_the_clients_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blendgate.access")
    response = await client.post("/v1/chat/completions", headers={"x-request-id": "req-7.a:b"},
                                 json={"model": ENSEMBLE, "messages": MESSAGES})
    assert response.headers["x-request-id"] == "req-7.a:b"
    (line,) = access_lines(caplog)
    assert fields(line) == {
        "request_id": "req-7.a:b", "method": "POST", "route": "/v1/chat/completions",
        "model": ENSEMBLE, "status": "200", "duration_s": fields(line)["duration_s"],
        "ttfb_s": "-", "stream": "false", "candidates": "2", "failures": "1",
        "completion_id": response.json()["id"],
    }
    assert float(fields(line)["duration_s"]) >= 0
    assert SECRET not in caplog.text


async def test_stream_line_has_time_to_first_byte_and_the_completion_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blendgate.access")
    async with client.stream("POST", "/v1/chat/completions", json={
            "model": ENSEMBLE, "messages": MESSAGES, "stream": True}) as response:
        lines = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    (line,) = access_lines(caplog)
    logged = fields(line)
    assert logged["request_id"] == generated
    assert logged["stream"] == "true" and float(logged["ttfb_s"]) <= float(logged["duration_s"])
    assert logged["completion_id"] == json.loads(lines[0][len("data: "):])["id"]
    assert (logged["candidates"], logged["failures"]) == ("2", "1")
    assert SECRET not in caplog.text


@pytest.mark.parametrize("sent", ["x" * 129, "has space", "new\\nline", ""])
async def test_an_unsafe_request_id_is_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/health", headers={"x-request-id": sent})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


async def test_client_text_cannot_forge_log_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blendgate.access")
    await client.post("/v1/chat/completions",
                      json={"model": "evil\nrequest_id=forged", "messages": MESSAGES})
    await client.get("/no/such path")
    model_line, path_line = access_lines(caplog)
    assert "\n" not in model_line and fields(model_line)["request_id"] != "forged"
    assert fields(model_line)["model"] == json.dumps("evil\nrequest_id=forged")
    assert fields(model_line)["status"] == "404"
    assert fields(path_line)["route"] == '"/no/such path"'


async def test_probes_log_at_debug(client: httpx.AsyncClient,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="blendgate.access")
    await client.get("/health")
    await client.get("/metrics")
    assert access_lines(caplog) == []
    assert [fields(line)["route"] for line in access_lines(caplog, logging.DEBUG)] == [
        "/health", "/metrics"]


def test_access_log_can_be_turned_off_and_uvicorns_is(config: GatewayConfig,
                                                        engine: ScriptedEngine) -> None:
    quiet = create_app(config.model_copy(update={
        "server": config.server.model_copy(update={"access_log": False})}), engine=engine)
    assert state_of(quiet).metrics is not None
    assert server_config(quiet, config, host="127.0.0.1", port=0, log_level="info").access_log \
        is False


async def test_exposition_from_the_start(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    assert "python_info{" in text
    assert f'blendgate_build_info{{version="{package_version()}"}} 1.0' in text
    assert "blendgate_requests_in_flight 0.0" in text
    for member in ("alpha", "beta"):
        for error_type in ("BackendTimeout", "BackendConnectError", "QuorumCut"):
            assert (f'blendgate_member_failures_total{{error_type="{error_type}",'
                    f'member="{member}",model="{ENSEMBLE}"}} 0.0') in text
    for model in (ENSEMBLE, SINGLE):
        assert f'blendgate_completion_tokens_total{{model="{model}"}} 0.0' in text
    assert "_created" not in text


async def test_tokens_first_token_and_in_flight(app: FastAPI, engine: ScriptedEngine,
                                                client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json={"model": ENSEMBLE, "messages": MESSAGES})
    async with client.stream("POST", "/v1/chat/completions", json={
            "model": SINGLE, "messages": MESSAGES, "stream": True}) as response:
        _ = [line async for line in response.aiter_lines()]
    text = (await client.get("/metrics")).text
    prompt = len(MESSAGES[0]["content"].split())
    answer = len(engine.reply.split()) + 1  # "<reply> <choice index>"
    assert f'blendgate_prompt_tokens_total{{model="{ENSEMBLE}"}} {float(prompt)}' in text
    assert f'blendgate_completion_tokens_total{{model="{ENSEMBLE}"}} {float(answer)}' in text
    assert f'blendgate_completion_tokens_total{{model="{SINGLE}"}} {float(answer)}' in text
    assert f'blendgate_time_to_first_token_seconds_count{{model="{SINGLE}"}} 1.0' in text
    assert f'blendgate_time_to_first_token_seconds_count{{model="{ENSEMBLE}"}}' not in text

    engine.complete_delay_s = 1.0
    slow = asyncio.ensure_future(client.post(
        "/v1/chat/completions", json={"model": ENSEMBLE, "messages": MESSAGES}))
    while len(engine.requests) != 3:
        await asyncio.sleep(0.01)
    during = (await client.get("/metrics")).text
    await slow
    after = (await client.get("/metrics")).text
    assert "blendgate_requests_in_flight 1.0" in during
    assert "blendgate_requests_in_flight 0.0" in after
