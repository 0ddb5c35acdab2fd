"""The bounded queue in front of an OpenAI backend's connection pool."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx
import pytest

from ensemble.backends.openai_compat import OpenAICompatBackend
from ensemble.config import OpenAIBackendConfig
from ensemble.errors import OverloadedError
from ensemble.types import ChatMessage, SamplingParams
from gateway.app import create_app
from gateway.config import parse_config
from gateway.testing import FakeUpstreams
from tests.gateway.conftest import running_server
from tests.gateway.test_reliability import MESSAGES, upstream_backend, wait_until

PROMPT = [ChatMessage("user", "hi")]


async def _hold_first_delta(backend: OpenAICompatBackend, held: asyncio.Event) -> None:
    """Start a stream, take its first delta, then keep the connection until cancelled."""
    stream = backend.stream(PROMPT, SamplingParams())
    try:
        await anext(stream)
        held.set()
        await asyncio.sleep(60)
    finally:
        await stream.aclose()


async def test_calls_beyond_pool_and_queue_are_shed_at_once(fake_upstreams: FakeUpstreams) -> None:
    cfg = OpenAIBackendConfig(base_url=fake_upstreams.stall_stream, model="m",
                              max_connections=2, max_queue=1, timeout_s=30)
    backend = OpenAICompatBackend("stalling", cfg)
    holders = []
    try:
        for _ in range(2):
            held = asyncio.Event()
            holders.append(asyncio.create_task(_hold_first_delta(backend, held)))
            await asyncio.wait_for(held.wait(), 5)
        queued = asyncio.create_task(_hold_first_delta(backend, asyncio.Event()))
        await asyncio.sleep(0.1)
        assert not queued.done()  # waits for a slot
        assert (backend.in_flight, backend.queued) == (2, 1)
        started = time.monotonic()
        with pytest.raises(OverloadedError, match="max_queue") as shed:
            await _hold_first_delta(backend, asyncio.Event())
        assert time.monotonic() - started < 0.5 and shed.value.retry_after_s >= 1
        assert len(fake_upstreams.requests) == 2  # the shed and the queued call sent nothing
        holders[0].cancel()  # a slot frees: the queued call proceeds
        assert await asyncio.to_thread(wait_until, lambda: len(fake_upstreams.requests) == 3)
        holders.append(queued)
    finally:
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        await backend.aclose()


def test_pass_through_overload_is_503_with_retry_after(fake_upstreams: FakeUpstreams) -> None:
    config = parse_config({
        "server": {"api_keys_env": None},
        "backends": {"tiny": upstream_backend(fake_upstreams.hang, expose=True, max_connections=1,
                                      max_queue=0, timeout_s=5)},
    })
    body = {"model": "tiny", "messages": MESSAGES}
    with running_server(create_app(config)) as base, ThreadPoolExecutor(1) as pool:
        holder = pool.submit(httpx.post, f"{base}/v1/chat/completions", json=body, timeout=10)
        assert wait_until(lambda: fake_upstreams.hanging == 1)  # the one slot is taken
        started = time.monotonic()
        shed = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=10)
        assert time.monotonic() - started < 2
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert shed.json()["error"]["code"] == "overloaded"
        assert set(shed.json()["error"]) == {"message", "type", "param", "code"}
        assert holder.result().status_code == 504  # the held call still ends truthfully
    assert len(fake_upstreams.requests) == 1  # the shed call never reached the upstream


async def test_an_ensemble_whose_every_member_is_full_is_overloaded_not_failed() -> None:
    from ensemble.fanout import FanoutMember, fan_out
    from tests.ensemble.scripted import ScriptedBackend

    full = ScriptedBackend("full", error=OverloadedError("queue full"))
    members = [FanoutMember(f"m{i}", full, 1, SamplingParams(), 5.0) for i in range(2)]
    with pytest.raises(OverloadedError):  # 503 + Retry-After, not 502
        await fan_out(PROMPT, members, min_candidates=1, deadline_s=5.0)


async def test_a_connect_timeout_is_retried_once(
    fake_upstreams: FakeUpstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpcore opens every asyncio connection with AnyIOBackend.connect_tcp: its first one
    # times out here (as on a starved event loop), the ones after connect for real.
    connect = httpcore.AnyIOBackend.connect_tcp
    attempts: list[str] = []

    async def flaky(self: httpcore.AnyIOBackend, host: str, port: int, **kwargs: Any) -> Any:
        attempts.append(host)
        if len(attempts) == 1:
            raise httpcore.ConnectTimeout("first connect timed out")
        return await connect(self, host, port, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", flaky)
    backend = OpenAICompatBackend("ok", OpenAIBackendConfig(base_url=fake_upstreams.ok, model="m"))
    try:
        completions = await backend.complete(PROMPT, SamplingParams())
    finally:
        await backend.aclose()
    assert completions[0].text and len(attempts) == 2
