"""Small hardening rules: content type, redirects, CORS, /health, strict types, log bounds,
server-side switch for the transparency field, no checkpoint paths in /v1/rank."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ensemble.checkpoints import public_name
from gateway.app import create_app
from tests.gateway.conftest import ENSEMBLE, ScriptedEngine, make_config

MESSAGES = [{"role": "user", "content": "hello"}]
OK_BODY = {"model": ENSEMBLE, "messages": MESSAGES}


@asynccontextmanager
async def gateway(engine: ScriptedEngine, **server: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_config(**server), engine=engine)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        yield client


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
async def test_json_bodies_need_a_json_content_type(
    client: httpx.AsyncClient, engine: ScriptedEngine, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/chat/completions", headers=headers,
                                 content=b'{"model": "blend", "messages": [{"role": "user", '
                                         b'"content": "hi"}]}')
    assert response.status_code == 415
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "unsupported_media_type"
    assert engine.requests == []  # a cross-origin text/plain post never generates
    ok = await client.post("/v1/chat/completions", json=OK_BODY,
                           headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


async def test_trailing_slash_post_is_not_redirected(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions/", json=OK_BODY,
                                 headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_cors_is_off_by_default_and_configurable(engine: ScriptedEngine) -> None:
    preflight = {"origin": "https://chat.example.com", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"}
    async with gateway(engine) as client:
        response = await client.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    async with gateway(engine, cors_origins=["https://chat.example.com"]) as client:
        response = await client.options("/v1/chat/completions", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://chat.example.com"
        response = await client.post("/v1/chat/completions", json=OK_BODY,
                                     headers={"origin": "https://chat.example.com"})
        assert response.headers["access-control-allow-origin"] == "https://chat.example.com"
        other = await client.options("/v1/chat/completions",
                                     headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_health_names_no_model_without_a_key(engine: ScriptedEngine) -> None:
    async with gateway(engine, api_keys=["sk-1"]) as client:
        anonymous = await client.get("/health")
    assert anonymous.status_code == 200
    assert ENSEMBLE not in anonymous.text and "alpha" not in anonymous.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", "2"), ("stream", "yes"), ("stream", 1), ("max_tokens", "5"), ("max_tokens", 10**100),
     ("max_completion_tokens", 2**31), ("seed", 2**64 + 1), ("seed", -(2**63) - 1),
     ("temperature", "0.5"), ("top_k", 2**40)],
)
async def test_wrongly_typed_or_out_of_range_values_are_400(
    client: httpx.AsyncClient, engine: ScriptedEngine, field: str, value: object
) -> None:
    response = await client.post("/v1/chat/completions", json={**OK_BODY, field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field
    assert engine.requests == []


async def test_in_range_values_still_pass(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    response = await client.post("/v1/chat/completions", json={
        **OK_BODY, "seed": 2**63 - 1, "max_tokens": 2**31 - 1, "temperature": 1, "top_k": -1})
    assert response.status_code == 200, response.text
    assert engine.requests[0].params.seed == 2**63 - 1


async def test_unknown_field_names_are_logged_bounded(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    extras = {"x" * 100_000: 1, **{f"field_{i}": i for i in range(200)}}
    with caplog.at_level(logging.INFO, logger="gateway.protocol"):
        response = await client.post("/v1/chat/completions", json={**OK_BODY, **extras})
    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if "ignored fields" in r.getMessage()]
    assert lines and all(len(line) < 1_000 for line in lines)
    assert "201 ignored fields" in lines[0]


async def test_operators_can_disable_the_transparency_field(engine: ScriptedEngine) -> None:
    asked = {**OK_BODY, "blend": {"return_candidates": True}}
    async with gateway(engine) as client:
        assert "blend" in (await client.post("/v1/chat/completions", json=asked)).json()
    async with gateway(engine, allow_return_candidates=False) as client:
        response = await client.post("/v1/chat/completions", json=asked)
        assert response.status_code == 200
        assert "blend" not in response.json()
        streamed = await client.post("/v1/chat/completions", json={**asked, "stream": True})
        assert '"blend":{' not in streamed.text


def test_rank_model_names_hide_local_paths(tmp_path: Path) -> None:
    local = tmp_path / "secret" / "PairRM-hf"
    local.mkdir(parents=True)
    assert public_name(str(local)) == "PairRM-hf"
    assert public_name("/opt/models/pairrm/") == "pairrm"
    assert public_name("~/models/pairrm") == "pairrm"
    assert public_name("llm-blender/PairRM-hf") == "llm-blender/PairRM-hf"  # a hub id


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/responses", {"model": ENSEMBLE, "input": []}),
    ("/v1/completions", {"model": ENSEMBLE, "prompt": "hi", "max_tokens": "5"}),
])
async def test_converted_requests_that_do_not_validate_are_400_not_500(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:  # found by tests/gateway/test_schemathesis.py
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
