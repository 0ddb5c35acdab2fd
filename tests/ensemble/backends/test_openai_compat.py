"""OpenAICompatBackend against fake fault servers, a mock transport and a real llama.cpp server."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from ensemble.backends.openai_compat import OpenAICompatBackend, chat_completions_url
from ensemble.config import OpenAIBackendConfig
from ensemble.errors import (
    BackendConnectError,
    BackendError,
    BackendProtocolError,
    BackendStatusError,
    BackendTimeout,
    ConfigError,
)
from ensemble.types import ChatMessage, SamplingParams, TextDelta
from gateway.testing import DEFAULT_TEXTS, ERROR500_MESSAGE, FakeUpstreams

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]


def _backend(base_url: str, **cfg: object) -> OpenAICompatBackend:
    config = OpenAIBackendConfig(base_url=base_url, model="m", **cfg)  # type: ignore[arg-type]
    return OpenAICompatBackend("up", config)


async def _collect(backend: OpenAICompatBackend, n: int = 1, **params: object) -> list[TextDelta]:
    return [d async for d in backend.stream(MESSAGES, SamplingParams(**params), n)]  # type: ignore[arg-type]


def test_url_gets_v1_suffix_once() -> None:
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


async def test_complete_sends_one_request_with_n_and_params(fake_upstreams: FakeUpstreams) -> None:
    backend = _backend(fake_upstreams.ok, params={"top_k": 20, "temperature": 0.1})
    params = SamplingParams(temperature=0.7, max_tokens=9, stop=("\n",), extra={"min_p": 0.05})
    out = await backend.complete(MESSAGES, params, n=3)
    await backend.aclose()
    assert [c.text for c in out] == [DEFAULT_TEXTS[0]] * 3
    assert out[0].usage is not None and out[0].usage.prompt_tokens == 7
    assert all(c.usage is None for c in out[1:])
    assert len(fake_upstreams.requests) == 1
    _, body = fake_upstreams.requests[0]
    assert body["n"] == 3 and body["model"] == "m"
    assert body["temperature"] == 0.7 and body["top_k"] == 20 and body["min_p"] == 0.05
    assert body["stop"] == ["\n"] and body["max_tokens"] == 9
    assert body["messages"][1] == {"role": "user", "content": "Say hello."}


async def test_stream_yields_deltas_then_finish_and_usage(fake_upstreams: FakeUpstreams) -> None:
    backend = _backend(fake_upstreams.ok)
    deltas = await _collect(backend, n=2)
    await backend.aclose()
    for index in (0, 1):
        text = "".join(d.text for d in deltas if d.index == index)
        assert text == DEFAULT_TEXTS[0]
        ends = [d for d in deltas if d.index == index and d.finish_reason]
        assert [d.finish_reason for d in ends] == ["stop"]
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens > 0
    assert all(d.usage is None for d in deltas[:-1])
    assert fake_upstreams.requests[0][1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("streamed", [False, True])
async def test_error500_maps_to_status_error(fake_upstreams: FakeUpstreams, streamed: bool) -> None:
    backend = _backend(fake_upstreams.error500)
    with pytest.raises(BackendStatusError) as info:
        await (_collect(backend) if streamed else backend.complete(MESSAGES, SamplingParams()))
    await backend.aclose()
    assert info.value.status == 500 and ERROR500_MESSAGE in str(info.value)
    assert info.value.backend == "up"


@pytest.mark.parametrize("streamed", [False, True])
async def test_refused_maps_to_connect_error(fake_upstreams: FakeUpstreams, streamed: bool) -> None:
    backend = _backend(fake_upstreams.refused)
    with pytest.raises(BackendConnectError):
        await (_collect(backend) if streamed else backend.complete(MESSAGES, SamplingParams()))
    await backend.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_malformed_maps_to_protocol_error(fake_upstreams: FakeUpstreams, streamed: bool) -> None:
    backend = _backend(fake_upstreams.malformed)
    with pytest.raises(BackendProtocolError):
        await (_collect(backend) if streamed else backend.complete(MESSAGES, SamplingParams()))
    await backend.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_dropped_stream_maps_to_protocol_error(
    fake_upstreams: FakeUpstreams, streamed: bool
) -> None:
    backend = _backend(fake_upstreams.drop_stream)
    with pytest.raises(BackendProtocolError):
        await (_collect(backend) if streamed else backend.complete(MESSAGES, SamplingParams()))
    await backend.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_hang_times_out_within_timeout(fake_upstreams: FakeUpstreams, streamed: bool) -> None:
    backend = _backend(fake_upstreams.hang, timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(BackendTimeout):
        await (_collect(backend) if streamed else backend.complete(MESSAGES, SamplingParams()))
    assert time.monotonic() - start < 2.0
    await backend.aclose()


@pytest.mark.parametrize("streamed", [False, True])
async def test_cancel_closes_upstream_connection(
    fake_upstreams: FakeUpstreams, streamed: bool
) -> None:
    backend = _backend(fake_upstreams.hang, timeout_s=30)
    call = _collect(backend) if streamed else backend.complete(MESSAGES, SamplingParams())
    task = asyncio.create_task(call)
    while not fake_upstreams.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while fake_upstreams.disconnects == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await backend.aclose()
    assert fake_upstreams.disconnects == 1


def _mock_backend(handler: httpx.MockTransport) -> OpenAICompatBackend:
    cfg = OpenAIBackendConfig(base_url="http://mock/v1", model="m")
    return OpenAICompatBackend("mock", cfg, client=httpx.AsyncClient(transport=handler))


@pytest.mark.parametrize("payload", [{"foo": 1}, {"choices": []}, {"choices": [{"index": 0}]}, [1]])
async def test_wrong_shape_maps_to_protocol_error(payload: object) -> None:
    backend = _mock_backend(httpx.MockTransport(lambda r: httpx.Response(200, json=payload)))
    with pytest.raises(BackendProtocolError):
        await backend.complete(MESSAGES, SamplingParams())


async def test_status_error_keeps_upstream_message_and_code() -> None:
    body = {"error": {"message": "model `m` not found", "type": "invalid_request_error"}}
    backend = _mock_backend(httpx.MockTransport(lambda r: httpx.Response(404, json=body)))
    with pytest.raises(BackendStatusError, match="model `m` not found") as info:
        await backend.complete(MESSAGES, SamplingParams())
    assert info.value.status == 404


async def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})

    monkeypatch.setenv("FAKE_KEY_ENV", "sk-123")
    cfg = OpenAIBackendConfig(base_url="http://mock", model="m", api_key_env="FAKE_KEY_ENV")
    backend = OpenAICompatBackend("k", cfg, client=httpx.AsyncClient(
        transport=httpx.MockTransport(handler)))
    assert (await backend.complete(MESSAGES, SamplingParams()))[0].text == "hi"
    assert seen == ["Bearer sk-123"]
    monkeypatch.delenv("FAKE_KEY_ENV")
    with pytest.raises(ConfigError, match="FAKE_KEY_ENV"):
        OpenAICompatBackend("k", cfg)


async def test_stream_error_event_maps_to_status_error() -> None:
    event = json.dumps({"error": {"code": 400, "message": "context too long"}})
    sse = f"data: {event}\n\n".encode()
    backend = _mock_backend(httpx.MockTransport(
        lambda r: httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})))
    with pytest.raises(BackendStatusError, match="context too long") as info:
        await _collect(backend)
    assert info.value.status == 400


@pytest.mark.slow
async def test_real_llama_server_complete_n2(llama_server_url: str) -> None:
    backend = _backend(llama_server_url, timeout_s=120)
    out = await backend.complete(MESSAGES, SamplingParams(max_tokens=16, temperature=0.8), n=2)
    await backend.aclose()
    assert len(out) == 2 and all(c.text.strip() for c in out)
    assert all(c.finish_reason in ("stop", "length") for c in out)
    usage = out[0].usage
    assert usage is not None and usage.prompt_tokens > 5 and 0 < usage.completion_tokens <= 32


@pytest.mark.slow
async def test_real_llama_server_stream(llama_server_url: str) -> None:
    backend = _backend(llama_server_url, timeout_s=120)
    deltas = await _collect(backend, n=1, max_tokens=12)
    await backend.aclose()
    text_deltas = [d for d in deltas if d.text]
    assert len(text_deltas) >= 2 and "".join(d.text for d in text_deltas).strip()
    assert deltas[-1].finish_reason in ("stop", "length")
    assert deltas[-1].usage is not None and 0 < deltas[-1].usage.completion_tokens <= 12


@pytest.mark.slow
async def test_real_llama_server_bad_request_is_status_error(llama_server_url: str) -> None:
    backend = _backend(llama_server_url, timeout_s=60)
    params = SamplingParams(max_tokens=4, extra={"response_format": {"type": "bogus"}})
    with pytest.raises(BackendError) as info:
        await backend.complete(MESSAGES, params)
    await backend.aclose()
    assert isinstance(info.value, BackendStatusError) and info.value.status == 400
    assert "response_format" in str(info.value)
