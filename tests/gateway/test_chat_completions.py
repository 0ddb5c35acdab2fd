"""The official openai client (sync over real HTTP, async in-process) against the gateway."""

from __future__ import annotations

import httpx
import openai
import pytest
from fastapi import FastAPI

from gateway.state import state_of
from tests.gateway.conftest import ENSEMBLE, SINGLE, ScriptedEngine

MESSAGES = [{"role": "user", "content": "say something nice"}]


def sync_client(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0)


def test_sync_client_blended_answer(server_url: str, engine: ScriptedEngine) -> None:
    completion = sync_client(server_url).chat.completions.create(
        model=ENSEMBLE, messages=MESSAGES, temperature=0.2, max_tokens=12, seed=3,
        stop="###", user="u1",
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == ENSEMBLE
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "blended answer number 0"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 4)
    assert completion.usage.total_tokens == 7
    sent = engine.requests[-1]
    assert (sent.params.temperature, sent.params.max_tokens, sent.params.seed) == (0.2, 12, 3)
    assert sent.params.stop == ("###",)
    assert getattr(completion, "blend", None) is None  # transparency is opt-in


def test_sync_client_n_and_return_candidates(server_url: str) -> None:
    completion = sync_client(server_url).chat.completions.create(
        model=ENSEMBLE, messages=MESSAGES, n=2, extra_body={"blend": {"return_candidates": True}},
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[1].message.content == "blended answer number 1"
    blend = completion.model_extra["blend"]  # type: ignore[index]
    assert [(c["member"], c["score"], c["rank"]) for c in blend["candidates"]] == [
        ("alpha", 0.9, 1), ("alpha", 0.1, 2)]
    assert blend["candidates"][1]["latency_s"] == 0.5
    assert blend["failures"] == [{"member": "beta", "error": "connection refused",
                                  "type": "BackendConnectError", "latency_s": 0.01}]
    assert blend["fuser"] == "llm:alpha"
    assert blend["timings"] == {"fanout_s": 0.5, "rank_s": 0.125, "fuse_s": 0.25,
                                "total_s": 0.875}


def test_sync_client_lists_models(server_url: str) -> None:
    models = sync_client(server_url).models.list()
    assert [(m.id, m.object, m.owned_by) for m in models.data] == [
        (ENSEMBLE, "model", "blendgate"), (SINGLE, "model", "blendgate")]
    assert models.data[0].model_extra == {"kind": "ensemble", "members": ["alpha", "beta"]}


async def test_async_client_pass_through(app: FastAPI, client: httpx.AsyncClient) -> None:
    api = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k", http_client=client,
                             max_retries=0)
    completion = await api.chat.completions.create(
        model=SINGLE, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        extra_body={"blend": {"return_candidates": True}},
    )
    assert completion.model == SINGLE
    assert completion.choices[0].message.content == "blended answer number 0"
    assert getattr(completion, "blend", None) is None  # pass-through models have no report


async def test_async_client_errors_are_openai_exceptions(client: httpx.AsyncClient) -> None:
    api = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k", http_client=client,
                             max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        await api.chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await api.chat.completions.create(model=ENSEMBLE, messages=MESSAGES, n=9)
    assert bad.value.param == "n"


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models_loaded": 2}  # no ids without a key
    await client.post("/v1/chat/completions", json={"model": ENSEMBLE, "messages": MESSAGES})
    await client.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES})
    await client.post("/v1/chat/completions", content=b"{",
                      headers={"content-type": "application/json"})
    text = (await client.get("/metrics")).text
    endpoint = 'endpoint="/v1/chat/completions"'
    assert f'blendgate_requests_total{{{endpoint},model="blend",status="200"}} 1.0' in text
    assert f'blendgate_requests_total{{{endpoint},model="_unknown",status="404"}} 1.0' in text
    assert f'blendgate_requests_total{{{endpoint},model="_unknown",status="400"}} 1.0' in text
    assert 'blendgate_member_duration_seconds_count{member="alpha",model="blend"} 2.0' in text
    assert ('blendgate_member_failures_total{error_type="BackendConnectError",member="beta",'
            'model="blend"} 1.0') in text
    assert 'blendgate_stage_duration_seconds_sum{model="blend",stage="rank"} 0.125' in text
    assert 'blendgate_stage_duration_seconds_sum{model="blend",stage="fuse"} 0.25' in text
    assert f'blendgate_request_duration_seconds_count{{{endpoint},model="blend"}} 1.0' in text


def test_each_app_has_its_own_registry(config: object, engine: ScriptedEngine) -> None:
    from gateway.app import create_app

    first, second = create_app(config, engine=engine), create_app(config, engine=engine)  # type: ignore[arg-type]
    assert state_of(first).metrics.registry is not state_of(second).metrics.registry


async def test_lifespan_closes_only_engines_it_built(app: FastAPI, engine: ScriptedEngine) -> None:
    async with app.router.lifespan_context(app):
        assert state_of(app).loading.engine() is engine
    assert engine.closed is False
