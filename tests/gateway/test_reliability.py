"""Reliability over the real stack: uvicorn + the real ``BlendEngine`` + fake HTTP upstreams.

The fuser is an ``llm`` fuser on an OpenAI backend, so the fuse stage holds a pooled upstream
connection while it streams; these tests check what happens to it when the client leaves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from ensemble.backends.openai_compat import OpenAICompatBackend
from ensemble.fusers.llm import LLMFuser
from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.state import state_of
from gateway.testing import DEFAULT_TEXTS, REJECT400_MESSAGE, FakeUpstreams
from tests.gateway.conftest import running_server

MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
FOX = DEFAULT_TEXTS[0]
STOPS = 70  # over the default max_connections (64): a leak would exhaust the pool


def upstream_backend(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": url, "model": "fake", "expose": False,
            "timeout_s": 30, "connect_timeout_s": 1, **extra}


def reliability_config(up: FakeUpstreams, **ensemble: Any) -> GatewayConfig:
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {
            "good": upstream_backend(up.ok, expose=True),
            "stalling": upstream_backend(up.stall_stream),
            "trickling": upstream_backend(up.trickle),
            "stuck": upstream_backend(up.hang),
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


def fuse_calls_in_flight(app: FastAPI) -> int:
    """Calls the fuse backend still holds a pooled connection for."""
    fuser = state_of(app).loading.engine().fuser("fuse-stall")
    assert isinstance(fuser, LLMFuser) and isinstance(fuser.backend, OpenAICompatBackend)
    return fuser.backend.in_flight


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
        assert wait_until(lambda: fuse_calls_in_flight(stall_app) == 0), "a connection is held"
        # the backend still serves: a new blend gets its fused first token
        assert first_content_then_hang_up(client, "fuse-stall")
        assert wait_until(lambda: fake_upstreams.stream_hangups == STOPS + 1)


# --------------------------------------------------------------------------- truthful errors


def errors_config(up: FakeUpstreams) -> GatewayConfig:
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {
            "good": upstream_backend(up.ok),
            "picky": upstream_backend(up.reject400, expose=True),
            "picky2": upstream_backend(up.reject400),
            "broken": upstream_backend(up.error500),
            "stuck": upstream_backend(up.hang, timeout_s=0.3),
        },
        "models": [
            {"type": "ensemble", "id": "all-reject", "ranker": {"type": "none"},
             "members": [{"backend": "picky"}, {"backend": "picky2"}]},
            {"type": "ensemble", "id": "some-reject", "ranker": {"type": "none"},
             "members": [{"backend": "picky"}, {"backend": "broken"}]},
            {"type": "ensemble", "id": "all-slow", "ranker": {"type": "none"},
             "member_timeout_s": 0.3, "members": [{"backend": "stuck"}]},
            {"type": "ensemble", "id": "fuse-500", "ranker": {"type": "none"},
             "fuser": {"type": "llm", "backend": "broken"}, "members": [{"backend": "good"}]},
            {"type": "ensemble", "id": "fuse-400", "ranker": {"type": "none"},
             "fuser": {"type": "llm", "backend": "picky"}, "members": [{"backend": "good"}]},
            {"type": "ensemble", "id": "fuse-hang", "ranker": {"type": "none"},
             "fuser": {"type": "llm", "backend": "stuck"}, "members": [{"backend": "good"}]},
        ],
    })


@pytest.fixture
async def errors_http(fake_upstreams: FakeUpstreams) -> Any:
    app = create_app(errors_config(fake_upstreams))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30
    ) as client:
        assert await state_of(app).loading.wait() == "ok"  # models load in the background
        yield client


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "status", "code", "retry"),
    [
        ("picky", 400, "upstream_rejected", "false"),
        ("all-reject", 400, "members_rejected", "false"),
        ("some-reject", 502, "all_members_failed", None),
        ("all-slow", 504, "members_timed_out", None),
        ("fuse-500", 502, "fuser_upstream_error", None),
        ("fuse-400", 502, "fuser_rejected", "false"),
        ("fuse-hang", 504, "fuser_timeout", None),
    ],
)
async def test_failures_are_labelled_truthfully(
    errors_http: httpx.AsyncClient, model: str, status: int, code: str, retry: str | None,
    stream: bool,
) -> None:
    response = await errors_http.post("/v1/chat/completions", json={
        "model": model, "messages": MESSAGES, "stream": stream})
    if stream and response.status_code == 200:  # failed after the headers: one error event
        error = next(json.loads(line[6:])["error"] for line in response.text.splitlines()
                     if line.startswith("data: {\"error\""))
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.status_code == status, response.text
        assert response.headers.get("x-should-retry") == retry
        error = response.json()["error"]
    assert error["code"] == code
    if model == "picky":
        assert error["message"] == REJECT400_MESSAGE
    if model == "all-reject":  # names every member that rejected it, with the reason
        assert "picky: BackendStatusError" in error["message"]
        assert "picky2: BackendStatusError" in error["message"]
        assert "maximum context length" in error["message"]
    if model == "some-reject":
        assert "picky: BackendStatusError: upstream HTTP 400" in error["message"]


@pytest.mark.parametrize("model", ["picky", "all-reject", "fuse-400"])
async def test_the_sdk_never_retries_a_rejected_request(
    errors_http: httpx.AsyncClient, fake_upstreams: FakeUpstreams, model: str
) -> None:
    api = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k", http_client=errors_http,
                             max_retries=3)
    with pytest.raises(openai.APIStatusError):
        await api.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    rejected = [m for m, _ in fake_upstreams.requests if m == "reject400"]
    assert len(rejected) == (2 if model == "all-reject" else 1)  # one try, no retries


# --------------------------------------------------------------------------- deadline_s

DEADLINE_S = 1.5


def deadline_config(up: FakeUpstreams) -> GatewayConfig:
    def blend(model_id: str, fuse_backend: str, **extra: Any) -> dict[str, Any]:
        return {"type": "ensemble", "id": model_id, "ranker": {"type": "none"},
                "fuser": {"type": "llm", "backend": fuse_backend}, "deadline_s": DEADLINE_S,
                "members": [{"backend": "good"}], **extra}

    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {"good": upstream_backend(up.ok), "stuck": upstream_backend(up.hang),
                     "trickling": upstream_backend(up.trickle)},
        "models": [
            blend("fuse-hangs", "stuck"),
            blend("fuse-trickles", "trickling"),
            blend("fuse-hangs-fallback", "stuck", on_deadline="best_candidate"),
            blend("fuse-trickles-fallback", "trickling", on_deadline="best_candidate"),
            {"type": "single", "id": "alone-hangs", "backend": "stuck",
             "deadline_s": DEADLINE_S},
            {"type": "single", "id": "alone-trickles", "backend": "trickling",
             "deadline_s": DEADLINE_S},
        ],
    })


@pytest.fixture
def deadline_url(fake_upstreams: FakeUpstreams) -> Iterator[str]:
    with running_server(create_app(deadline_config(fake_upstreams))) as base:
        yield base


def timed_post(base: str, model: str, stream: bool) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.post(f"{base}/v1/chat/completions", timeout=30, json={
        "model": model, "messages": MESSAGES, "stream": stream})
    return time.monotonic() - started, response


def sse_payloads(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize(("model", "stage"), [
    ("fuse-hangs", "while fusing"), ("fuse-trickles", "while fusing"),
    # a pass-through model: the backends' own timeout_s is 30 s, so only its deadline_s answers
    ("alone-hangs", "while waiting for the backend"),
    ("alone-trickles", "while waiting for the backend"),
])
def test_deadline_bounds_the_slow_stage(
    deadline_url: str, fake_upstreams: FakeUpstreams, model: str, stage: str
) -> None:
    elapsed, response = timed_post(deadline_url, model, stream=False)
    assert elapsed < DEADLINE_S + 1.0
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert stage in response.json()["error"]["message"]

    elapsed, response = timed_post(deadline_url, model, stream=True)
    assert elapsed < DEADLINE_S + 1.0
    assert response.status_code == 200  # headers went out before the deadline
    payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    errors = [json.loads(p)["error"] for p in payloads[:-1] if p.startswith('{"error"')]
    assert [e["code"] for e in errors] == ["deadline_exceeded"]
    # tokens flowed until the deadline cut a trickling stream; a hung one sent none
    assert any('"content":" ' in p for p in payloads) == model.endswith("-trickles")
    # the cut upstream call was hung up on, not left running
    assert wait_until(lambda: fake_upstreams.hanging == 0 and fake_upstreams.streaming == 0)


@pytest.mark.parametrize("stream", [False, True])
def test_on_deadline_best_candidate_answers_with_the_top_candidate(
    deadline_url: str, stream: bool
) -> None:
    elapsed, response = timed_post(deadline_url, "fuse-hangs-fallback", stream=stream)
    assert elapsed < DEADLINE_S + 1.0
    assert response.status_code == 200
    if not stream:
        assert response.json()["choices"][0]["message"]["content"] == FOX
        return
    chunks = [json.loads(p) for p in sse_payloads(response)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                   if c["choices"]) == FOX


def test_on_deadline_mid_stream_is_an_error_event_not_a_second_answer(deadline_url: str) -> None:
    elapsed, response = timed_post(deadline_url, "fuse-trickles-fallback", stream=True)
    assert elapsed < DEADLINE_S + 1.0
    payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["error"]["code"] == "deadline_exceeded"
