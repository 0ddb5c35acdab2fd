"""The gateway over the real ``BlendEngine`` (built by the app's lifespan) and fake upstreams.

No model is loaded: members are OpenAI backends pointing at the fault servers of
``gateway/testing.py``, ranked by ``none`` and answered by the ``none`` fuser,
so these run in the default (fast) suite.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.state import state_of
from gateway.testing import DEFAULT_TEXTS, FakeUpstreams
from tests.gateway.conftest import running_server

MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
FOX = DEFAULT_TEXTS[0]


def engine_config(up: FakeUpstreams, **ensemble: Any) -> GatewayConfig:
    def backend(url: str, expose: bool = False) -> dict[str, Any]:
        return {"kind": "openai", "base_url": url, "model": "fake", "expose": expose,
                "timeout_s": 5, "connect_timeout_s": 1}

    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {"good": backend(up.ok, expose=True), "down": backend(up.refused),
                     "broken": backend(up.error500), "stuck": backend(up.hang)},
        "models": [
            {"type": "ensemble", "id": "duo", "ranker": {"type": "none"}, "fuser": {"type": "none"},
             "members": [{"backend": "good", "samples": 2}, {"backend": "down"}]},
            {"type": "ensemble", "id": "doomed", "ranker": {"type": "none"},
             "fuser": {"type": "none"},
             "members": [{"backend": "down"}, {"backend": "broken"}]},
            {"type": "ensemble", "id": "slow", "ranker": {"type": "none"},
             "fuser": {"type": "none"}, "member_timeout_s": 30, "deadline_s": 0.5,
             "members": [{"backend": "stuck"}]},
            {"type": "ensemble", "id": "stuck", "ranker": {"type": "none"},
             "fuser": {"type": "none"}, "members": [{"backend": "stuck"}]},
        ],
    })


@pytest.fixture
def engine_app(fake_upstreams: FakeUpstreams) -> FastAPI:
    return create_app(engine_config(fake_upstreams))


@pytest.fixture
async def http(engine_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with engine_app.router.lifespan_context(engine_app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=engine_app), base_url="http://gateway", timeout=30
    ) as client:
        assert await state_of(engine_app).loading.wait() == "ok"  # models load in the background
        yield client


@pytest.fixture
def url(engine_app: FastAPI) -> Iterator[str]:
    with running_server(engine_app) as base:
        yield base


async def test_models_list_ensembles_and_exposed_backends(http: httpx.AsyncClient) -> None:
    data = (await http.get("/v1/models")).json()["data"]
    assert [(m["id"], m["kind"]) for m in data] == [
        ("duo", "ensemble"), ("doomed", "ensemble"), ("slow", "ensemble"), ("stuck", "ensemble"),
        ("good", "single")]


async def test_blend_with_a_failed_member_reports_it(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={
        "model": "duo", "messages": MESSAGES, "blend": {"return_candidates": True}})
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == FOX
    assert body["usage"]["completion_tokens"] == 2 * len(FOX.split())
    blend = body["blend"]
    assert [c["member"] for c in blend["candidates"]] == ["good", "good"]
    assert [c["rank"] for c in blend["candidates"]] == [1, 2]
    assert [(f["member"], f["type"]) for f in blend["failures"]] == [("down", "BackendConnectError")]
    assert blend["fuser"] == "none"
    assert blend["timings"]["total_s"] >= blend["timings"]["fanout_s"] > 0


async def test_all_members_failed_is_502_with_each_error(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={"model": "doomed",
                                                             "messages": MESSAGES})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "all_members_failed"
    assert "down: BackendConnectError" in error["message"]
    assert "broken: BackendStatusError" in error["message"]


async def test_deadline_is_504(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={"model": "slow",
                                                             "messages": MESSAGES})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"


def test_pass_through_stream_with_usage(url: str) -> None:
    api = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    chunks = list(api.chat.completions.create(
        model="good", messages=MESSAGES, stream=True, n=2,
        stream_options={"include_usage": True}))
    for index in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks
                       if c.choices and c.choices[0].index == index)
        assert text == FOX
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2 * len(FOX.split())


def test_blended_stream_sdk(url: str) -> None:
    api = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
    chunks = list(api.chat.completions.create(
        model="duo", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        extra_body={"blend": {"return_candidates": True}}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == FOX
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert final.model_extra is not None and len(final.model_extra["blend"]["candidates"]) == 2


def test_client_hang_up_cancels_upstream_calls(url: str, fake_upstreams: FakeUpstreams) -> None:
    with httpx.Client(base_url=url, timeout=1.0) as client, pytest.raises(httpx.ReadTimeout):
        client.post("/v1/chat/completions", json={"model": "stuck", "messages": MESSAGES})
    # Well before the backend's own 5 s timeout would end the upstream call.
    deadline = time.monotonic() + 2.0
    while not fake_upstreams.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstreams.disconnects == 1, "the upstream call outlived the client"


def test_stream_hang_up_cancels_upstream_calls(url: str, fake_upstreams: FakeUpstreams) -> None:
    body = {"model": "stuck", "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=url, timeout=10) as client, client.stream(
        "POST", "/v1/chat/completions", json=body
    ) as response:
        assert response.status_code == 200  # headers sent while the member still hangs
        assert fake_upstreams.disconnects == 0
    deadline = time.monotonic() + 2.0
    while not fake_upstreams.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_upstreams.disconnects == 1, "the upstream call outlived the stream"


async def test_rank_with_only_none_rankers_is_501_not_invented_ranks(
    http: httpx.AsyncClient,
) -> None:
    # every ensemble here ranks with `none`: there is no model to rank with
    for route, body in (("/v1/rank", {"prompt": "q", "candidates": ["a", "b", "a"]}),
                        ("/v1/compare", {"prompt": "q", "a": "x", "b": "y"})):
        response = await http.post(route, json=body)
        assert response.status_code == 501, response.text
        assert response.json()["error"]["code"] == "ranker_not_configured"


async def test_a_none_rank_service_is_501(fake_upstreams: FakeUpstreams) -> None:
    config = engine_config(fake_upstreams).model_copy(
        update={"rank_service": parse_config({"backends": {}, "rank_service": {"type": "none"}}
                                             ).rank_service})
    app = create_app(config)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        response = await client.post("/v1/rank", json={"prompt": "q", "candidates": ["a", "b"]})
    assert response.status_code == 501


async def test_quorum_cut_and_usage_breakdown_in_the_blend_field_and_metrics(
    fake_upstreams: FakeUpstreams,
) -> None:
    base = engine_config(fake_upstreams).model_dump(mode="json")
    base["models"] = [{"type": "ensemble", "id": "quorum", "ranker": {"type": "none"},
                       "fuser": {"type": "none"}, "min_candidates": 1, "quorum_wait_s": 0.2,
                       "member_timeout_s": 60, "deadline_s": 60,
                       "members": [{"backend": "good"}, {"backend": "stuck"}]}]
    app = create_app(parse_config(base))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30) as client:
        started = time.perf_counter()
        response = await client.post("/v1/chat/completions", json={
            "model": "quorum", "messages": MESSAGES, "blend": {"return_candidates": True}})
        took = time.perf_counter() - started
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200 and took < 10  # not the stuck member's 60 s
    body = response.json()
    blend = body["blend"]
    assert [c["member"] for c in blend["candidates"]] == ["good"]
    assert [(f["member"], f["type"]) for f in blend["failures"]] == [("stuck", "QuorumCut")]
    usage = blend["usage"]
    assert [(u["stage"], u["name"]) for u in usage] == [("member", "good"), ("fuser", "none")]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert sum(u[key] for u in usage) == body["usage"][key]
    cut = [line for line in metrics.splitlines()
           if line.startswith("blendgate_member_failures_total{")
           and 'error_type="QuorumCut"' in line and 'member="stuck"' in line]
    assert [line.rsplit(" ", 1)[1] for line in cut] == ["1.0"], metrics
