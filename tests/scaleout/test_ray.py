"""The Ray Serve application on a local Ray (2 CPUs, small object store), tiny PairRM.

One application for the module (starting Ray and deploying takes tens of seconds on 2 shared
cores): the gateway ingress (2 replicas), the PairRM deployment at 2 replicas and a tiny
GenFuser deployment (1 replica), members from a fake OpenAI upstream. Deployments ask for no
CPU so every replica fits on 2 CPUs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytest.importorskip("ray.serve")

from ensemble.config import GenFuserConfig, PairRMRankerConfig
from ensemble.errors import FuserError
from ensemble.fusers.genfuser import GenFuser
from ensemble.rankers.pairrm import PairRMRanker
from ensemble.types import ChatMessage, SamplingParams
from gateway.config import GatewayConfig, parse_config
from gateway.testing import start_fake_upstreams
from tests.gateway.conftest import free_port
from tests.genfuser.tiny_t5 import build_tiny_checkpoint
from tests.scaleout.conftest import pairrm_cfg

pytestmark = pytest.mark.slow  # Ray start + deploy: ~30-60 s on the shared 2-core VM

TEXTS = ("get out!", "hi! I am fine, thanks!", "bye!")
PROMPT = "hello, how are you!"
APP = "blendgate-test"


def _genfuser(checkpoint: Path) -> dict[str, Any]:
    return {"type": "genfuser", "checkpoint": str(checkpoint), "device": "cpu",
            "num_beams": 1, "max_new_tokens": 12}  # greedy: streamed, deterministic


def _config(checkpoint: Path, fuser_checkpoint: Path, upstream: str) -> GatewayConfig:
    members = [{"backend": "ok", "samples": 3}]
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {"ok": {"kind": "openai", "base_url": upstream, "model": "ok"}},
        "models": [{"type": "ensemble", "id": "blend", "members": members,
                    "ranker": pairrm_cfg(checkpoint), "fuser": {"type": "none"},
                    "top_k": 1},
                   {"type": "ensemble", "id": "fused", "members": members,
                    "ranker": pairrm_cfg(checkpoint), "fuser": _genfuser(fuser_checkpoint),
                    "top_k": 2}],
        "ray": {"app_name": APP,
                "gateway": {"num_replicas": 2, "num_cpus": 0},
                # a long batch window, so concurrent rankings surely share batches
                "ranker": {"num_replicas": 2, "num_cpus": 0, "max_batch_size": 16,
                           "batch_wait_ms": 200},
                "fuser": {"num_replicas": 1, "num_cpus": 0, "max_batch_size": 8,
                          "batch_wait_ms": 200}},
    })


@pytest.fixture(scope="module")
def tiny_fuser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("gen_fuser_tiny"))


@pytest.fixture(scope="module")
def ray_app(tiny_pairrm_hf_dir: Path, tiny_fuser_dir: Path) -> Iterator[tuple[str, Any]]:
    import ray
    from ray import serve

    from gateway.ray_app import build_application

    with start_fake_upstreams(texts=TEXTS) as upstreams:
        ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        try:
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_application(_config(tiny_pairrm_hf_dir, tiny_fuser_dir,
                                                upstreams.ok)), name=APP, route_prefix="/")
            yield f"http://127.0.0.1:{port}", serve.get_deployment_handle("ranker-0", APP)
        finally:
            serve.shutdown()
            ray.shutdown()


def _in_process_ranks(checkpoint: Path, candidates: list[str]) -> list[int]:
    async def rank() -> list[int]:
        ranker = await PairRMRanker.load(PairRMRankerConfig(checkpoint=str(checkpoint),
                                                            device="cpu"))
        try:
            ranking = await ranker.rank([ChatMessage("user", PROMPT)], candidates)
        finally:
            await ranker.aclose()
        return list(ranking.ranks)

    return asyncio.run(rank())


def _rank(url: str, candidates: list[str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/rank", json={"prompt": PROMPT, "candidates": candidates},
                      timeout=60)


def test_serves_chat_and_rank_with_in_process_ranks(
        ray_app: tuple[str, Any], tiny_pairrm_hf_dir: Path) -> None:
    url, _ = ray_app
    expected = _in_process_ranks(tiny_pairrm_hf_dir, list(TEXTS))
    assert sorted(expected) == [1, 2, 3]

    ranked = _rank(url, list(TEXTS))
    assert ranked.status_code == 200, ranked.text
    assert ranked.json()["ranks"] == expected
    assert ranked.json()["model"].startswith("pairrm:")  # the in-process ranker's name

    chat = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
        "model": "blend", "messages": [{"role": "user", "content": PROMPT}],
        "blend": {"return_candidates": True}})
    assert chat.status_code == 200, chat.text
    body = chat.json()
    by_text = {c["text"]: c["rank"] for c in body["blend"]["candidates"]}
    assert by_text == dict(zip(TEXTS, expected, strict=True))
    assert body["choices"][0]["message"]["content"] == TEXTS[expected.index(1)]
    assert httpx.get(f"{url}/health").status_code == 200
    # /metrics: the gateway's own families from both gateway replicas, labelled per replica
    families = {f.name: f for f in text_string_to_metric_families(
        httpx.get(f"{url}/metrics").text)}
    assert len({s.labels["replica"] for s in families["process_cpu_seconds"].samples}) == 2
    chats = [s.value for s in families["blendgate_requests"].samples
             if s.name == "blendgate_requests_total" and s.labels["model"] == "blend"]
    assert sum(chats) >= 1


def _replica_stats(handle: Any, replicas: int = 2, tries: int = 40) -> dict[int, Any]:
    """Stats of each replica, by pid (calls are routed at random: ask until all answered)."""
    seen: dict[int, Any] = {}
    for _ in range(tries):
        stats = handle.stats.remote().result(timeout_s=30)
        seen[stats.pid] = stats
        if len(seen) == replicas:
            break
    return seen


def test_serve_batch_gathers_concurrent_rankings(ray_app: tuple[str, Any]) -> None:
    url, handle = ray_app
    before = _replica_stats(handle)
    requests = 12
    with ThreadPoolExecutor(requests) as pool:
        answers = list(pool.map(lambda i: _rank(url, [TEXTS[i % 3], TEXTS[(i + 1) % 3]]),
                                range(requests)))
    assert all(a.status_code == 200 for a in answers)
    after = _replica_stats(handle)
    calls = sum(s.calls for s in after.values()) - sum(s.calls for s in before.values())
    batches = sum(s.batches for s in after.values()) - sum(s.batches for s in before.values())
    forwards = (sum(s.model_batches for s in after.values())
                - sum(s.model_batches for s in before.values()))
    assert calls == requests
    assert batches < requests  # @serve.batch put several rankings in one batch
    assert forwards == batches  # ... and each batch was one pooled PairRM forward
    assert max(size for s in after.values() for size in s.batch_sizes) > 1


def test_killed_replica_is_replaced_and_no_request_lost(
        ray_app: tuple[str, Any], tiny_pairrm_hf_dir: Path) -> None:
    from ray import serve

    url, handle = ray_app
    expected = _in_process_ranks(tiny_pairrm_hf_dir, list(TEXTS))
    victim = handle.pid.remote().result(timeout_s=30)
    requests = 24
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(_rank, url, list(TEXTS)) for _ in range(requests)]
        time.sleep(0.3)  # load is running
        os.kill(victim, signal.SIGKILL)
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200] * requests, answers[-1].text
    assert all(a.json()["ranks"] == expected for a in answers)

    # The controller notices the death and starts a replacement: wait until two live
    # replicas, neither of them the victim, answer.
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while time.monotonic() < deadline:
        pids = set(_replica_stats(handle, tries=10))
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(1)
    assert victim not in pids and len(pids) == 2, pids
    status = serve.status().applications[APP].deployments["ranker-0"]
    assert status.replica_states.get("RUNNING", 0) == 2, status


def _in_process_fuse(checkpoint: Path, top: list[str]) -> str:
    async def fuse() -> str:
        fuser = await GenFuser.load(GenFuserConfig.model_validate(_genfuser(checkpoint)))
        try:
            stream = await fuser.fuse([ChatMessage("user", PROMPT)], top, SamplingParams())
            return "".join([d.text async for d in stream.deltas])
        finally:
            await fuser.aclose()

    return asyncio.run(fuse())


def _stream_chat(url: str) -> tuple[str, dict[str, Any]]:
    """The streamed text of one "fused" chat request, and its report (last chunk)."""
    text, report = [], {}
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=120, json={
            "model": "fused", "messages": [{"role": "user", "content": PROMPT}],
            "stream": True, "blend": {"return_candidates": True}}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            assert "error" not in chunk, chunk
            for choice in chunk.get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
            report = chunk.get("blend") or report
    return "".join(text), report


def test_genfuser_deployment_streams_batches_and_matches_in_process(
        ray_app: tuple[str, Any], tiny_fuser_dir: Path) -> None:
    from ray import serve

    url, _ = ray_app
    fuser_handle = serve.get_deployment_handle("fuser-0", APP)
    text, report = _stream_chat(url)
    assert report["fuser"] == "genfuser"
    ranked = sorted(report["candidates"], key=lambda c: c["rank"])
    assert text == _in_process_fuse(tiny_fuser_dir, [c["text"] for c in ranked[:2]])
    assert text  # the tiny T5 says something

    with ThreadPoolExecutor(4) as pool:  # concurrent fuses share a streaming batch
        texts = [t for t, _ in pool.map(lambda _: _stream_chat(url), range(4))]
    assert texts == [text] * 4
    stats = fuser_handle.stats.remote().result(timeout_s=30)
    assert stats.calls == 5 and max(stats.batch_sizes) > 1


def test_fuser_errors_cross_the_handle_with_their_type(ray_app: tuple[str, Any]) -> None:
    from ray import serve

    from ensemble.ray_serve import RayFuser

    fuser = RayFuser(serve.get_deployment_handle("fuser-0", APP), "genfuser")

    async def fuse_nothing() -> None:
        await fuser.fuse([ChatMessage("user", PROMPT)], [], SamplingParams())

    with pytest.raises(FuserError, match="no candidates"):  # raised in the replica
        asyncio.run(fuse_nothing())
