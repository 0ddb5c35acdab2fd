"""GenFuser end to end: HTTP app -> BlendEngine -> fake OpenAI members -> GenFuser (tiny T5).

The transparency report (``blend``) must name the fuser that produced the answer: "genfuser",
or "llm" when a member's answer is too long for GenFuser and the LLM fallback takes over.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewayConfig, parse_config
from gateway.state import state_of
from gateway.testing import FakeUpstreams, start_fake_upstreams

MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me about foxes."}]
LONG_ANSWER = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)


def genfuser_config(up: FakeUpstreams, checkpoint: Path, *, fallback: bool) -> GatewayConfig:
    fuser: dict[str, Any] = {"type": "genfuser", "checkpoint": str(checkpoint), "device": "cpu",
                             "max_new_tokens": 8, "num_beams": 2}
    if fallback:
        fuser["fallback"] = {"type": "llm", "backend": "synth"}
    member = {"kind": "openai", "model": "fake", "expose": False, "timeout_s": 5,
              "connect_timeout_s": 1}
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {"good": {**member, "base_url": up.ok},
                     "synth": {**member, "base_url": up.ok}},
        "models": [{"type": "ensemble", "id": "gf", "ranker": {"type": "none"}, "fuser": fuser,
                    "top_k": 2, "members": [{"backend": "good", "samples": 3}]}],
    })


async def _client(config: GatewayConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=60
    ) as client:
        assert await state_of(app).loading.wait() == "ok"  # models load in the background
        yield client


@pytest.fixture
async def http(fake_upstreams: FakeUpstreams, tiny_fuser_dir: Path
               ) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(genfuser_config(fake_upstreams, tiny_fuser_dir, fallback=True)):
        yield client


@pytest.fixture(scope="module")
def long_upstreams() -> Iterator[FakeUpstreams]:
    with start_fake_upstreams(texts=(LONG_ANSWER,)) as upstreams:
        yield upstreams


async def test_blend_is_fused_by_genfuser(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={
        "model": "gf", "messages": MESSAGES, "blend": {"return_candidates": True}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["blend"]["fuser"] == "genfuser"
    assert len(body["blend"]["candidates"]) == 3
    assert body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


async def test_streamed_blend_is_fused_by_genfuser(http: httpx.AsyncClient) -> None:
    events: list[dict[str, Any]] = []
    async with http.stream("POST", "/v1/chat/completions", json={
            "model": "gf", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": True},
            "blend": {"return_candidates": True}}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text
    assert events[-1]["blend"]["fuser"] == "genfuser"


async def test_long_candidates_go_to_the_llm_fallback(long_upstreams: FakeUpstreams,
                                                      tiny_fuser_dir: Path) -> None:
    config = genfuser_config(long_upstreams, tiny_fuser_dir, fallback=True)
    async for http in _client(config):
        response = await http.post("/v1/chat/completions", json={
            "model": "gf", "messages": MESSAGES, "blend": {"return_candidates": True}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["blend"]["fuser"] == "llm"
    assert body["choices"][0]["message"]["content"] == LONG_ANSWER  # the fake synthesiser


async def test_long_candidates_without_fallback_are_cut(long_upstreams: FakeUpstreams,
                                                        tiny_fuser_dir: Path) -> None:
    config = genfuser_config(long_upstreams, tiny_fuser_dir, fallback=False)
    async for http in _client(config):
        response = await http.post("/v1/chat/completions", json={
            "model": "gf", "messages": MESSAGES, "blend": {"return_candidates": True}})
    assert response.status_code == 200, response.text
    assert response.json()["blend"]["fuser"] == "genfuser"


@pytest.mark.slow
async def test_genfuser_over_a_real_llama_cpp_server(llama_server_url: str,
                                                     tiny_fuser_dir: Path) -> None:
    """SmolLM2 members on a llama.cpp server (real wire format), fused by GenFuser."""
    config = parse_config({
        "server": {"api_keys_env": None},
        "backends": {"smollm2": {"kind": "openai", "base_url": llama_server_url,
                                 "model": "smollm2", "timeout_s": 120, "expose": False}},
        "models": [{"type": "ensemble", "id": "gf", "ranker": {"type": "none"},
                    "fuser": {"type": "genfuser", "checkpoint": str(tiny_fuser_dir),
                              "device": "cpu", "max_new_tokens": 8},
                    "members": [{"backend": "smollm2", "samples": 2,
                                 "params": {"max_tokens": 16}}],
                    "deadline_s": 120, "member_timeout_s": 120}],
    })
    async for http in _client(config):
        response = await http.post("/v1/chat/completions", json={
            "model": "gf", "messages": MESSAGES, "max_tokens": 16,
            "blend": {"return_candidates": True}})
    assert response.status_code == 200, response.text
    blend = response.json()["blend"]
    assert blend["fuser"] == "genfuser"
    assert len(blend["candidates"]) == 2 and all(c["text"] for c in blend["candidates"])
