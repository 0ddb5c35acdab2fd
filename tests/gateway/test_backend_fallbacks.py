"""Fallback backends of ``type: single`` models, through the openai client and raw SSE.

The faults are the point, so most primaries are fake upstreams that fail a set way (refused,
500, 429, a timeout, a server that dies before or after its first token); the slow test kills
a real llama.cpp server process before and during a stream.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from ensemble.errors import ConfigError
from gateway.app import create_app
from gateway.config import parse_config
from gateway.testing import DEFAULT_TEXTS, FakeUpstreams
from tests.gateway.conftest import running_server

FOX = DEFAULT_TEXTS[0]
MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
SHOW = {"blend": {"return_candidates": True}}
PRIMARY_MODES = ("refused", "error500", "rate_limited", "drop_before_token", "hang")


def _backend(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": url, "model": "fake", "expose": False,
            "timeout_s": 1, "connect_timeout_s": 1, **extra}


def fallback_config(up: FakeUpstreams) -> dict[str, Any]:
    backends = {mode: _backend(up.url(mode)) for mode in PRIMARY_MODES}
    backends |= {"good": _backend(up.ok), "dies": _backend(up.drop_stream),
                 "picky": _backend(up.reject400)}
    models: list[dict[str, Any]] = [
        {"type": "single", "id": f"from-{mode}", "backend": mode, "fallbacks": ["good"]}
        for mode in (*PRIMARY_MODES, "dies", "picky")]
    models.append({"type": "single", "id": "connect-only", "backend": "error500",
                   "fallbacks": ["good"], "fallback_on": ["connect"]})
    models.append({"type": "single", "id": "all-down", "backend": "refused",
                   "fallbacks": ["error500"]})
    return {"server": {"api_keys_env": None}, "backends": backends, "models": models}


@pytest.fixture
def gateway_url(fake_upstreams: FakeUpstreams) -> Iterator[str]:
    with running_server(create_app(parse_config(fallback_config(fake_upstreams)))) as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="k", max_retries=0, timeout=30)


def sse_lines(url: str, model: str) -> tuple[int, dict[str, str], list[str]]:
    """Status, headers and the ``data:`` payloads of one streamed request."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30, json={
            "model": model, "messages": MESSAGES, "stream": True}) as response:
        data = [line.removeprefix("data: ") for line in response.iter_lines()
                if line.startswith("data: ")]
        return response.status_code, dict(response.headers), data


@pytest.mark.parametrize("mode", PRIMARY_MODES)
def test_non_streamed_request_moves_to_the_fallback(
    client: openai.OpenAI, fake_upstreams: FakeUpstreams, mode: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=f"from-{mode}", messages=MESSAGES, extra_body=SHOW)  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.choices[0].message.content == FOX
    assert raw.headers["x-blendgate-backend"] == "good"
    assert (completion.model_extra or {})["blend"]["backend"] == "good"
    assert [m for m, _ in fake_upstreams.requests][-1] == "ok"


@pytest.mark.parametrize("mode", PRIMARY_MODES)
def test_stream_failing_before_its_first_token_moves_to_the_fallback(
    client: openai.OpenAI, mode: str
) -> None:
    with client.chat.completions.with_streaming_response.create(
            model=f"from-{mode}", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True}, extra_body=SHOW) as raw:
        chunks = list(raw.parse())
        header = raw.headers.get("x-blendgate-backend")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FOX
    assert (chunks[-1].model_extra or {})["blend"]["backend"] == "good"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
    if mode != "hang":  # a 1 s timeout outlasts open_stream's wait for the first chunk
        assert header == "good"


def test_failure_after_the_first_token_is_one_error_event_and_done(
    gateway_url: str, fake_upstreams: FakeUpstreams
) -> None:
    status, _, data = sse_lines(gateway_url, "from-dies")
    assert status == 200
    assert data[-1] == "[DONE]"
    errors = [d for d in data[:-1] if "error" in json.loads(d)]
    assert errors == [data[-2]]  # one error event, right before [DONE]
    content = "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                      for d in data[:-2] if json.loads(d).get("choices"))
    assert content and FOX.startswith(content) and content != FOX
    assert [m for m, _ in fake_upstreams.requests] == ["drop_stream"]  # no silent retry


def test_client_error_never_falls_back(client: openai.OpenAI,
                                       fake_upstreams: FakeUpstreams) -> None:
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        client.chat.completions.create(model="from-picky", messages=MESSAGES)  # type: ignore[arg-type]
    assert [m for m, _ in fake_upstreams.requests] == ["reject400"]


def test_triggers_are_configurable(client: openai.OpenAI,
                                   fake_upstreams: FakeUpstreams) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="connect-only", messages=MESSAGES)  # type: ignore[arg-type]
    assert [m for m, _ in fake_upstreams.requests] == ["error500"]


def test_last_backend_failure_is_the_answer(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError, match="fake upstream exploded"):
        client.chat.completions.create(model="all-down", messages=MESSAGES)  # type: ignore[arg-type]


def test_metrics_count_answers_by_backend(client: openai.OpenAI, gateway_url: str) -> None:
    client.chat.completions.create(model="from-refused", messages=MESSAGES)  # type: ignore[arg-type]
    text = httpx.get(f"{gateway_url}/metrics").text
    assert 'blendgate_backend_answers_total{backend="good",model="from-refused"} 1.0' in text


def test_unknown_fallback_backend_is_a_config_error(fake_upstreams: FakeUpstreams) -> None:
    config = fallback_config(fake_upstreams)
    config["models"][0]["fallbacks"] = ["nowhere"]
    with pytest.raises(ConfigError, match="unknown backend 'nowhere'"):
        parse_config(config)


@pytest.mark.slow
def test_real_llama_server_killed_before_and_during_a_stream(
    llama_server_url: str, smollm2_gguf_path: Any
) -> None:
    from tests.fixtures.llama_server import start_llama_server

    with contextlib.ExitStack() as primary:
        primary_url = primary.enter_context(start_llama_server(smollm2_gguf_path, parallel=1))
        config = {"server": {"api_keys_env": None}, "backends": {
            "primary": {"kind": "openai", "base_url": primary_url, "model": "m",
                        "connect_timeout_s": 2, "timeout_s": 120, "expose": False},
            "spare": {"kind": "openai", "base_url": llama_server_url, "model": "m",
                      "timeout_s": 120, "expose": False}},
            "models": [{"type": "single", "id": "chat", "backend": "primary",
                        "fallbacks": ["spare"]}]}
        with running_server(create_app(parse_config(config)), startup_timeout_s=60) as url:
            # long enough (at a few dozen tokens a second) to be cut by the kill
            request = {"model": "chat", "messages": MESSAGES, "stream": True,
                       "max_tokens": 1000, "temperature": 0}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=request,
                              timeout=120) as response:
                assert response.headers["x-blendgate-backend"] == "primary"
                lines = response.iter_lines()
                for line in lines:
                    if '"content":"' in line and '"content":""' not in line:
                        break
                primary.close()  # kill the server after its first token
                data = [line.removeprefix("data: ") for line in lines
                        if line.startswith("data: ")]
            assert data[-1] == "[DONE]" and '"error"' in data[-2], data[-3:]
            assert sum('"error"' in d for d in data) == 1
            answer = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0,
                                   timeout=120).chat.completions.with_streaming_response.create(
                model="chat", messages=MESSAGES, stream=True, max_tokens=8)  # type: ignore[arg-type]
            with answer as raw:  # the primary is dead now: its spare answers
                text = "".join(c.choices[0].delta.content or "" for c in raw.parse()
                               if c.choices)
                assert raw.headers["x-blendgate-backend"] == "spare"
            assert text.strip()
