"""``ranker: {type: remote}`` and ``fuser: {type: remote}`` against real blendgate servers.

The serving side is a real gateway (uvicorn on loopback) with a tiny PairRM as its
``rank_service`` and an LLM fuser (over a fake OpenAI upstream) as its ``fuse_service``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ensemble.config import (
    PairRMRankerConfig,
    RemoteFuserConfig,
    RemoteRankerConfig,
    parse_config,
)
from ensemble.engine import BlendEngine
from ensemble.errors import FuserError, OverloadedError, RankerError
from ensemble.fusers.remote import RemoteFuser
from ensemble.rankers.pairrm import PairRMRanker
from ensemble.rankers.remote import RemoteRanker
from ensemble.types import BlendRequest, ChatMessage, SamplingParams, TextDelta
from gateway.testing import DEFAULT_TEXTS, FakeUpstreams
from tests.ensemble.scripted import ScriptedBackend
from tests.gateway.conftest import free_port, running_server
from tests.scaleout.conftest import pairrm_cfg, serving_gateway

PROMPT_TEXT = "hello, how are you!"
MESSAGES = [ChatMessage("system", "Be kind."), ChatMessage("user", PROMPT_TEXT)]
CANDIDATES = ["get out!", "hi! I am fine, thanks!", "bye!", "I am well, and you?"]


@pytest.fixture(scope="module")
def ranker_url(tiny_pairrm_hf_dir: Path) -> Iterator[str]:
    with serving_gateway({"rank_service": pairrm_cfg(tiny_pairrm_hf_dir)}) as url:
        yield url


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A server whose every POST waits 30 s before answering (timeouts)."""

    async def hang(request: Request) -> Response:
        await asyncio.sleep(3)  # past every timeout under test; short, so teardown is quick
        return Response("late")

    app = Starlette(routes=[Route("/v1/{path:path}", hang, methods=["POST"])])
    with running_server(app) as url:  # type: ignore[arg-type]
        yield url


async def _collect(deltas: AsyncIterator[TextDelta]) -> list[TextDelta]:
    return [d async for d in deltas]


# --------------------------------------------------------------------------- ranker


async def test_remote_ranks_equal_in_process(ranker_url: str, tiny_pairrm_hf_dir: Path) -> None:
    local = await PairRMRanker.load(PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir),
                                                       device="cpu"))
    remote = RemoteRanker(RemoteRankerConfig(url=ranker_url, on_error="fail"))
    try:
        expected = await local.rank(MESSAGES, CANDIDATES)
        got = await remote.rank(MESSAGES, CANDIDATES)
    finally:
        await local.aclose()
        await remote.aclose()
    assert got.ranks == expected.ranks
    assert got.scores == pytest.approx(expected.scores, abs=1e-6)
    assert len(set(got.scores)) == len(CANDIDATES)  # a real ranking, not ties


def test_batched_rank_endpoint_equals_single_rankings(ranker_url: str) -> None:
    items = [{"prompt": PROMPT_TEXT, "candidates": CANDIDATES},
             {"messages": [{"role": "user", "content": "hi"}], "candidates": CANDIDATES[:2]},
             {"prompt": "bye", "candidates": CANDIDATES[1:]}]
    batch = httpx.post(f"{ranker_url}/v1/rank/batch", json={"items": items}, timeout=60)
    assert batch.status_code == 200, batch.text
    singles = [httpx.post(f"{ranker_url}/v1/rank", json=item, timeout=60).json()
               for item in items]
    assert [d["ranks"] for d in batch.json()["data"]] == [s["ranks"] for s in singles]
    for got, single in zip(batch.json()["data"], singles, strict=True):
        assert got["scores"] == pytest.approx(single["scores"], abs=1e-6)  # batch rounding

    too_many = httpx.post(f"{ranker_url}/v1/rank/batch", timeout=60, json={"items": [
        items[0], {"prompt": "x", "candidates": ["c"] * 33}]})  # server.max_candidates: 32
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "items[1].candidates"


async def test_dead_ranker_fails_or_keeps_order_as_configured() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    failing = RemoteRanker(RemoteRankerConfig(url=dead, on_error="fail", connect_retries=1))
    keeping = RemoteRanker(RemoteRankerConfig(url=dead, on_error="keep_order"))
    try:
        with pytest.raises(RankerError, match="ConnectError"):
            await failing.rank(MESSAGES, CANDIDATES)
        degraded = await keeping.rank(MESSAGES, CANDIDATES)
    finally:
        await failing.aclose()
        await keeping.aclose()
    assert degraded.ranks == (1,) * len(CANDIDATES)
    assert degraded.order() == list(range(len(CANDIDATES)))  # the members' order


async def test_connect_errors_are_retried_until_the_ranker_listens() -> None:
    """The port is refused at first (bound, not listening); the server starts listening
    0.3 s later, between httpx's transport retries (immediately, then after 0.5 s)."""

    async def rank(request: Request) -> Response:
        n = len((await request.json())["candidates"])
        return JSONResponse({"scores": [float(-i) for i in range(n)],
                             "ranks": list(range(1, n + 1))})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(
        Starlette(routes=[Route("/v1/rank", rank, methods=["POST"])]), log_level="warning"))
    starter = threading.Timer(0.3, server.run, kwargs={"sockets": [sock]})
    retrying = RemoteRanker(RemoteRankerConfig(url=url, on_error="fail", connect_retries=3))
    not_retrying = RemoteRanker(RemoteRankerConfig(url=url, on_error="fail", connect_retries=0))
    try:
        with pytest.raises(RankerError, match="ConnectError"):
            await not_retrying.rank(MESSAGES, CANDIDATES)
        starter.start()
        ranking = await retrying.rank(MESSAGES, CANDIDATES)
    finally:
        await retrying.aclose()
        await not_retrying.aclose()
        server.should_exit = True
        starter.join(timeout=5)
        sock.close()
    assert ranking.ranks == (1, 2, 3, 4)


async def test_ranker_timeout(hanging_url: str) -> None:
    ranker = RemoteRanker(RemoteRankerConfig(url=hanging_url, timeout_s=0.3, on_error="fail"))
    started = time.perf_counter()
    try:
        with pytest.raises(RankerError, match="no answer within 0.3s"):
            await ranker.rank(MESSAGES, CANDIDATES)
    finally:
        await ranker.aclose()
    assert time.perf_counter() - started < 5


async def test_ranker_http_errors_keep_in_process_types(ranker_url: str) -> None:
    ranker = RemoteRanker(RemoteRankerConfig(url=ranker_url, on_error="fail"))
    try:  # the serving side refuses an empty candidate list (400): a RankerError here
        with pytest.raises(RankerError, match="HTTP 400"):
            await ranker.rank(MESSAGES, [])
    finally:
        await ranker.aclose()


def _engine_config(ranker: dict[str, object], fuser: dict[str, object]) -> dict[str, object]:
    return {
        "backends": {n: {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": n}
                     for n in ("a", "b", "c")},
        "models": [{"type": "ensemble", "id": "blend", "members": [{"backend": "a"}, {"backend": "b"},
                                               {"backend": "c"}],
                    "ranker": ranker, "fuser": fuser, "top_k": 2}],
    }


async def _engine(config: dict[str, object]) -> BlendEngine:
    texts = {"a": "get out!", "b": "hi! I am fine, thanks!", "c": "bye!"}
    backends = {n: ScriptedBackend(n, texts=(t,)) for n, t in texts.items()}
    return await BlendEngine.from_config(parse_config(config), backends=backends)


async def test_ensemble_with_dead_ranker_degrades_or_fails_as_configured() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    request = BlendRequest("blend", MESSAGES[1:])
    async with await _engine(_engine_config(
            {"type": "remote", "url": dead, "on_error": "keep_order"}, {"type": "none"})) as eng:
        result = await eng.complete(request)
    assert result.choices[0].text == "get out!"  # first member: the order was kept
    assert result.report is not None and result.report.ranking is not None
    assert result.report.ranking.ranks == (1, 1, 1)
    async with await _engine(_engine_config(
            {"type": "remote", "url": dead, "on_error": "fail"}, {"type": "none"})) as eng:
        with pytest.raises(RankerError):
            await eng.complete(request)


# --------------------------------------------------------------------------- fuser


@pytest.fixture
def fuser_url(fake_upstreams: FakeUpstreams, tiny_pairrm_hf_dir: Path) -> Iterator[str]:
    config = {
        "backends": {m: {"kind": "openai", "base_url": fake_upstreams.url(m), "model": m,
                         "expose": False} for m in ("ok", "error500", "drop_stream")},
        "rank_service": pairrm_cfg(tiny_pairrm_hf_dir),
        "fuse_service": {"type": "llm", "backend": "ok"},
    }
    with serving_gateway(config) as url:
        yield url


async def test_streamed_remote_fuse(fuser_url: str, fake_upstreams: FakeUpstreams) -> None:
    fuser = RemoteFuser(RemoteFuserConfig(url=fuser_url))
    try:
        stream = await fuser.fuse(MESSAGES, CANDIDATES[:2], SamplingParams(max_tokens=32))
        deltas = await _collect(stream.deltas)
    finally:
        await fuser.aclose()
    assert stream.fuser == "llm"  # the serving side's fuser, as the report will name it
    assert len(deltas) > 3  # word by word, not one blob
    assert "".join(d.text for d in deltas) == DEFAULT_TEXTS[0]
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage is not None
    (_, body), = [r for r in fake_upstreams.requests if r[0] == "ok"]
    assert body["max_tokens"] == 32  # the sampling params crossed the hop
    assert "hi! I am fine, thanks!" in body["messages"][0]["content"]  # the candidates did


async def test_remote_ranker_and_fuser_in_an_ensemble(fuser_url: str) -> None:
    remote = {"type": "remote", "url": fuser_url, "on_error": "fail"}
    async with await _engine(_engine_config(remote, remote)) as eng:
        result = await eng.complete(BlendRequest("blend", MESSAGES[1:]))
        events = [e async for e in eng.stream(BlendRequest("blend", MESSAGES[1:]))]
    assert result.choices[0].text == DEFAULT_TEXTS[0]
    assert result.report is not None and result.report.fuser == "llm"
    assert result.report.ranking is not None and len(set(result.report.ranking.ranks)) == 3
    assert result.usage.completion_tokens > 0
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == DEFAULT_TEXTS[0]


async def test_remote_fuse_errors(fuser_url: str) -> None:
    # an error before the first event keeps its status: 500 -> FuserError, as in-process
    failing = RemoteFuser(RemoteFuserConfig(url=fuser_url + "/nowhere"))
    falling_back = RemoteFuser(RemoteFuserConfig(url=f"http://127.0.0.1:{free_port()}",
                                                 on_error="top_candidate"))
    try:
        with pytest.raises(FuserError, match="HTTP 404"):
            await failing.fuse(MESSAGES, CANDIDATES, SamplingParams())
        stream = await falling_back.fuse(MESSAGES, CANDIDATES, SamplingParams())
        assert stream.fuser == "none"
        assert "".join(d.text for d in await _collect(stream.deltas)) == CANDIDATES[0]
    finally:
        await failing.aclose()
        await falling_back.aclose()


async def test_remote_fuse_failing_upstream(fake_upstreams: FakeUpstreams) -> None:
    config = {"backends": {m: {"kind": "openai", "base_url": fake_upstreams.url(m), "model": m}
                           for m in ("error500", "drop_stream")},
              "fuse_service": {"type": "llm", "backend": "error500"}}
    with serving_gateway(config) as url:
        fuser = RemoteFuser(RemoteFuserConfig(url=url))
        try:
            with pytest.raises(FuserError, match="exploded"):
                stream = await fuser.fuse(MESSAGES, CANDIDATES, SamplingParams())
                await _collect(stream.deltas)
        finally:
            await fuser.aclose()
    config["fuse_service"] = {"type": "llm", "backend": "drop_stream"}
    with serving_gateway(config) as url:
        fuser = RemoteFuser(RemoteFuserConfig(url=url))
        try:  # text has streamed, then the upstream dropped: an in-band error -> FuserError
            stream = await fuser.fuse(MESSAGES, CANDIDATES, SamplingParams())
            with pytest.raises(FuserError):
                await _collect(stream.deltas)
        finally:
            await fuser.aclose()


async def test_fuser_timeout(hanging_url: str) -> None:
    fuser = RemoteFuser(RemoteFuserConfig(url=hanging_url, timeout_s=0.3))
    try:
        with pytest.raises(FuserError, match="Timeout"):
            await fuser.fuse(MESSAGES, CANDIDATES, SamplingParams())
    finally:
        await fuser.aclose()


async def test_overloaded_remote_is_overloaded() -> None:
    async def busy(request: Request) -> Response:
        return Response('{"error": {"message": "queue full"}}', status_code=503,
                        headers={"Retry-After": "7"})

    app = Starlette(routes=[Route("/v1/{path:path}", busy, methods=["POST"])])
    with running_server(app) as url:  # type: ignore[arg-type]
        ranker = RemoteRanker(RemoteRankerConfig(url=url, on_error="fail"))
        try:
            with pytest.raises(OverloadedError) as info:
                await ranker.rank(MESSAGES, CANDIDATES)
        finally:
            await ranker.aclose()
    assert info.value.retry_after_s == 7
