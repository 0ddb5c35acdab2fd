"""Streaming: OpenAI's chunk sequence, [DONE] last, one error event, disconnect cancels."""

from __future__ import annotations

import json
import logging

import httpx
import openai
import pytest

from ensemble.errors import FuserError, NoCandidatesError
from ensemble.types import MemberFailure
from gateway.streaming import EARLY_ERROR_WAIT_S
from tests.gateway.conftest import ENSEMBLE, SINGLE, ScriptedEngine

MESSAGES = [{"role": "user", "content": "stream me something"}]


def events(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]


def test_sync_client_stream_with_usage(server_url: str) -> None:
    api = openai.OpenAI(base_url=f"{server_url}/v1", api_key="k", max_retries=0)
    chunks = list(api.chat.completions.create(
        model=ENSEMBLE, messages=MESSAGES, stream=True, stream_options={"include_usage": True},
    ))
    assert all(c.object == "chat.completion.chunk" and c.model == ENSEMBLE for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "blended answer number 0"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)
    assert all(c.usage is None for c in chunks[:-1])


async def test_async_client_stream_without_usage(client: httpx.AsyncClient) -> None:
    api = openai.AsyncOpenAI(base_url="http://gateway/v1", api_key="k", http_client=client,
                             max_retries=0)
    stream = await api.chat.completions.create(model=SINGLE, messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices and c.usage is None for c in chunks)  # no usage chunk unless asked
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "blended answer number 0"


async def test_raw_stream_n2_with_report_and_done_last(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={
        "model": ENSEMBLE, "messages": MESSAGES, "stream": True, "n": 2,
        "stream_options": {"include_usage": True}, "blend": {"return_candidates": True},
    })
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]"
    assert payloads.count("[DONE]") == 1
    chunks = [json.loads(p) for p in payloads[:-1]]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]
        assert mine[0]["delta"] == {"role": "assistant", "content": ""}
        assert "".join(c["delta"].get("content", "") for c in mine) == f"blended answer number {index}"
        assert mine[-1] == {"index": index, "delta": {}, "finish_reason": "stop", "logprobs": None}
    final = chunks[-1]
    assert final["choices"] == []
    assert final["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert [c["rank"] for c in final["blend"]["candidates"]] == [1, 2]
    assert final["blend"]["failures"][0]["member"] == "beta"
    assert all("blend" not in c for c in chunks[:-1])


async def test_error_before_first_chunk_keeps_its_status(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.fail = NoCandidatesError(
        "every member failed", [MemberFailure("alpha", "BackendTimeout", "timed out", 1.0)])
    response = await client.post("/v1/chat/completions",
                                 json={"model": ENSEMBLE, "messages": MESSAGES, "stream": True})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "all_members_failed"
    assert "alpha: BackendTimeout: timed out" in error["message"]


async def test_mid_stream_failure_sends_one_error_event_then_done(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.fail, engine.fail_after = FuserError("fuser crashed"), 2
    response = await client.post("/v1/chat/completions",
                                 json={"model": ENSEMBLE, "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]"
    error_events = [json.loads(p) for p in payloads[:-1] if "error" in json.loads(p)]
    assert error_events == [{"error": {"message": "fuser crashed", "type": "server_error",
                                       "param": None, "code": "fuser_failed"}}]
    assert payloads[-2] == json.dumps(error_events[0])
    text = "".join(json.loads(p)["choices"][0]["delta"].get("content", "")
                   for p in payloads[:-2])
    assert text == "blended answer"  # what was streamed before the failure stays delivered
    metrics = (await client.get("/metrics")).text
    assert 'model="blend",status="500"} 1.0' in metrics


async def test_mid_stream_bug_is_generic_and_logged(
    client: httpx.AsyncClient, engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.fail, engine.fail_after = KeyError("secret internals"), 1
    with caplog.at_level(logging.ERROR, logger="gateway.streaming"):
        response = await client.post(
            "/v1/chat/completions", json={"model": ENSEMBLE, "messages": MESSAGES, "stream": True})
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])["error"]
    assert error["message"] == "Internal server error." and "secret" not in response.text
    assert "KeyError" in caplog.text and "Traceback" in caplog.text


def test_openai_client_raises_on_error_event(server_url: str, engine: ScriptedEngine) -> None:
    engine.fail, engine.fail_after = FuserError("fuser crashed"), 1
    api = openai.OpenAI(base_url=f"{server_url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError, match="fuser crashed"):
        list(api.chat.completions.create(model=ENSEMBLE, messages=MESSAGES, stream=True))


def test_disconnect_mid_stream_cancels_the_engine(server_url: str, engine: ScriptedEngine) -> None:
    engine.reply, engine.delta_delay_s = " ".join(["word"] * 200), 0.05
    body = {"model": ENSEMBLE, "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=server_url, timeout=10) as http, http.stream(
        "POST", "/v1/chat/completions", json=body
    ) as resp:
        assert next(resp.iter_lines()).startswith("data: ")
        assert engine.stream_started.wait(5)
    # leaving the block closes the connection mid-stream
    assert engine.cancelled.wait(5), "engine generator was not cancelled"
    with httpx.Client(base_url=server_url) as http:
        metrics = http.get("/metrics").text
    assert 'endpoint="/v1/chat/completions",model="blend",status="499"} 1.0' in metrics


def test_disconnect_while_waiting_cancels_a_completion(server_url: str, engine: ScriptedEngine) -> None:
    engine.complete_delay_s = 30
    with httpx.Client(base_url=server_url, timeout=0.5) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json={"model": ENSEMBLE, "messages": MESSAGES})
    assert engine.cancelled.wait(5), "engine.complete was not cancelled"


def test_disconnect_before_first_chunk_cancels_the_stream(
    server_url: str, engine: ScriptedEngine
) -> None:
    engine.stream_delay_s = 30  # a fan-out that has not produced anything yet
    body = {"model": ENSEMBLE, "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=server_url, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=body)  # gone before the headers
    assert engine.cancelled.wait(5), "stream was not cancelled before its headers"
    engine.cancelled.clear()
    with httpx.Client(base_url=server_url, timeout=10) as http, http.stream(
        "POST", "/v1/chat/completions", json=body
    ) as response:
        assert response.status_code == 200  # headers come after EARLY_ERROR_WAIT_S
    assert engine.cancelled.wait(5), "stream was not cancelled before its first chunk"


async def test_slow_failure_is_reported_in_band(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.stream_delay_s = EARLY_ERROR_WAIT_S + 0.3
    engine.fail = NoCandidatesError(
        "every member failed", [MemberFailure("alpha", "BackendTimeout", "timed out", 1.0)])
    response = await client.post("/v1/chat/completions",
                                 json={"model": ENSEMBLE, "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    payloads = events(response.text)
    assert payloads[-1] == "[DONE]" and len(payloads) == 2
    error = json.loads(payloads[0])["error"]
    assert error["code"] == "all_members_failed" and "alpha: BackendTimeout" in error["message"]
