"""Experiments through the HTTP gateway: routing to arms, the arm in headers and in ``blend``,
shadow runs off the request path, feedback, statistics, metrics and reload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from ensemble.types import BlendRequest, BlendResult
from gateway.app import create_app
from gateway.config import GatewayConfig, load_config
from gateway.state import state_of
from tests.experiments.conftest import sqlite_url
from tests.gateway.conftest import ENSEMBLE, SINGLE, ScriptedEngine

EXPERIMENT = "assistant"
USER_MSG = [{"role": "user", "content": "hello there"}]


@dataclass
class SlowSingleEngine(ScriptedEngine):
    """The single model (the shadow arm) takes ``single_delay_s`` to answer."""

    single_delay_s: float = 0.0

    async def complete(self, request: BlendRequest) -> BlendResult:
        if request.model == SINGLE:
            await asyncio.sleep(self.single_delay_s)
        return await super().complete(request)


def config_data(tmp_path: Path, *, weights: tuple[float, float] = (1, 1),
                shadow: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "server": {"api_keys_env": None, "max_n": 4, "max_candidates": 9},
        "backends": {
            "alpha": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"},
            "beta": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "b",
                     "expose": False},
        },
        "models": [{"type": "ensemble", "id": ENSEMBLE,
                    "members": [{"backend": "alpha", "samples": 2}, {"backend": "beta"}]}],
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.02},
        "experiments": [{
            "id": EXPERIMENT,
            "arms": [{"name": "ensemble", "model": ENSEMBLE, "weight": weights[0]},
                     {"name": "single", "model": SINGLE, "weight": weights[1]}],
            "shadow": shadow,
            "judge": {"type": "none"},
        }],
    }


def write_config(path: Path, data: dict[str, Any]) -> GatewayConfig:
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture
def slow_engine() -> SlowSingleEngine:
    return SlowSingleEngine()


async def open_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


@pytest.fixture
async def gateway(tmp_path: Path, slow_engine: SlowSingleEngine,
                  request: pytest.FixtureRequest) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    options = getattr(request, "param", {})
    path = tmp_path / "config.yaml"
    config = write_config(path, config_data(tmp_path, **options))
    app = create_app(config, engine=slow_engine, config_path=path)
    async for client in open_client(app):
        yield client, app


async def chat(client: httpx.AsyncClient, user: str | None = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": EXPERIMENT, "messages": USER_MSG, **extra}
    if user is not None:
        body["user"] = user
    return await client.post("/v1/chat/completions", json=body)


async def test_arm_in_headers_and_blend_field_and_sticky(gateway: Any) -> None:
    client, _ = gateway
    seen = {}
    for i in range(40):
        response = await chat(client, user=f"user-{i}")
        assert response.status_code == 200, response.text
        arm = response.headers["x-blendgate-arm"]
        assert response.headers["x-blendgate-experiment"] == EXPERIMENT
        blend = response.json()["blend"]
        assert blend["experiment"] == {"id": EXPERIMENT, "arm": arm,
                                       "model": ENSEMBLE if arm == "ensemble" else SINGLE}
        seen[f"user-{i}"] = arm
    assert set(seen.values()) == {"ensemble", "single"}
    for user, arm in list(seen.items())[:10]:  # sticky: same user, same arm
        assert (await chat(client, user=user)).headers["x-blendgate-arm"] == arm
    # The header is the fallback stickiness key.
    arms = {(await client.post("/v1/chat/completions", json={
        "model": EXPERIMENT, "messages": USER_MSG},
        headers={"x-blendgate-user": "carol"})).headers["x-blendgate-arm"] for _ in range(5)}
    assert len(arms) == 1


async def test_streamed_experiment_reports_the_arm(gateway: Any) -> None:
    client, app = gateway
    async with client.stream("POST", "/v1/chat/completions", json={
            "model": EXPERIMENT, "messages": USER_MSG, "stream": True, "user": "dave"}) as r:
        assert r.status_code == 200
        arm = r.headers["x-blendgate-arm"]
        lines = [line async for line in r.aiter_lines() if line.startswith("data: {")]
    assert f'"arm":"{arm}"' in lines[-1]
    await state_of(app).experiments.store.flush()
    stats = (await client.get(f"/v1/experiments/{EXPERIMENT}")).json()
    assert sum(a["requests"] for a in stats["arms"]) == 1


@pytest.mark.parametrize("gateway", [{"weights": (1, 0), "shadow": {
    "arm": "single", "sample_rate": 1.0, "max_concurrency": 1, "queue_size": 2}}],
    indirect=True)
async def test_shadow_never_delays_and_sheds_load(gateway: Any,
                                                  slow_engine: SlowSingleEngine) -> None:
    client, app = gateway
    slow_engine.single_delay_s = 1.0
    runtime = state_of(app).experiments
    started = time.perf_counter()
    for i in range(6):
        response = await chat(client, user=f"u{i}")
        assert response.headers["x-blendgate-arm"] == "ensemble"
    served_in = time.perf_counter() - started
    assert served_in < 0.8, served_in  # one shadow run alone takes 1 s
    stats = runtime.shadow_stats()[EXPERIMENT]
    # One running + two queued; the other three were dropped, and counted.
    assert stats.submitted == 3 and stats.dropped == 3
    slow_engine.single_delay_s = 0.0
    await runtime.drain_shadows()
    await runtime.store.flush()
    body = (await client.get(f"/v1/experiments/{EXPERIMENT}")).json()
    arms = {a["name"]: a for a in body["arms"]}
    assert arms["ensemble"]["requests"] == 6
    assert arms["single"]["shadow_requests"] == 3
    # judge "none" scores both orders the same: every verdict is a tie
    assert arms["single"]["win_rate"]["ties"] == 3
    assert arms["single"]["win_rate"]["rate"] == 0.5
    assert body["enough_evidence"] is False
    metrics = (await client.get("/metrics")).text
    assert 'blendgate_experiment_shadow_total{experiment="assistant",result="dropped"} 3.0' in metrics
    assert 'blendgate_experiment_verdicts_total{arm="single",experiment="assistant",outcome="tie"} 3.0' in metrics
    assert 'blendgate_store_up 1.0' in metrics


async def test_feedback_is_tied_to_the_arm(gateway: Any) -> None:
    client, app = gateway
    response = await chat(client, user="erin")
    completion_id, arm = response.json()["id"], response.headers["x-blendgate-arm"]
    vote = await client.post("/v1/feedback", json={"id": completion_id, "thumbs": "up",
                                                   "comment": "good"})
    assert vote.status_code == 200, vote.text
    assert vote.json()["arm"] == arm and vote.json()["score"] == 1.0
    rating = await client.post("/v1/feedback", json={"id": completion_id, "rating": 2})
    assert rating.json()["score"] == 0.25
    await state_of(app).experiments.store.flush()
    arms = {a["name"]: a for a in (await client.get("/v1/experiments")).json()["data"][0]["arms"]}
    assert arms[arm]["feedback_votes"] == 2
    assert arms[arm]["feedback_mean_score"] == pytest.approx(0.625)
    assert arms[arm]["feedback_rate"] == 2.0


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"id": "chatcmpl-unknown", "thumbs": "up"}, 404, "id"),
    ({"id": "x", "rating": 6}, 400, "rating"),
    ({"id": "x", "rating": 0}, 400, "rating"),
    ({"id": "x", "thumbs": "sideways"}, 400, "thumbs"),
    ({"id": "x"}, 400, None),
    ({"id": "x", "rating": 3, "thumbs": "up"}, 400, None),
])
async def test_bad_feedback_is_a_4xx_in_openai_shape(gateway: Any, body: dict[str, Any],
                                                     status: int, param: str | None) -> None:
    client, _ = gateway
    response = await client.post("/v1/feedback", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


async def test_unknown_experiment_is_404(gateway: Any) -> None:
    client, _ = gateway
    response = await client.get("/v1/experiments/nope")
    assert response.status_code == 404 and response.json()["error"]["code"] == "experiment_not_found"


async def test_models_list_the_experiment(gateway: Any) -> None:
    client, _ = gateway
    models = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
    assert models[EXPERIMENT]["kind"] == "experiment"
    assert models[EXPERIMENT]["members"] == [ENSEMBLE, SINGLE]


async def test_reload_changes_weights_without_dropping_in_flight(
        gateway: Any, slow_engine: SlowSingleEngine, tmp_path: Path) -> None:
    client, _ = gateway
    slow_engine.complete_delay_s = 0.3
    in_flight = [asyncio.create_task(chat(client, user=f"f{i}")) for i in range(4)]
    await asyncio.sleep(0.05)
    write_config(tmp_path / "config.yaml", config_data(tmp_path, weights=(0, 1)))
    reloaded = await client.post("/admin/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["restart_required_for_other_changes"] is False
    assert all(r.status_code == 200 for r in await asyncio.gather(*in_flight))
    slow_engine.complete_delay_s = 0.0
    arms = {(await chat(client, user=f"n{i}")).headers["x-blendgate-arm"] for i in range(10)}
    assert arms == {"single"}


async def test_reload_refuses_a_broken_config(gateway: Any, tmp_path: Path) -> None:
    client, _ = gateway
    (tmp_path / "config.yaml").write_text("experiments: [{id: assistant, arms: []}]\n"
                                          "backends: {}\n")
    response = await client.post("/admin/reload")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_config"
    assert (await chat(client, user="x")).status_code == 200  # still serving the old settings


async def test_store_outage_never_fails_an_answer(tmp_path: Path,
                                                   slow_engine: SlowSingleEngine) -> None:
    blocked = tmp_path / "down.db"
    blocked.mkdir()
    data = config_data(tmp_path)
    data["store"]["url"] = f"sqlite+aiosqlite:///{blocked}"
    app = create_app(write_config(tmp_path / "c.yaml", data), engine=slow_engine)
    async for client in open_client(app):
        for i in range(3):
            assert (await chat(client, user=f"o{i}")).status_code == 200
        await state_of(app).experiments.store.flush()
        metrics = (await client.get("/metrics")).text
        assert "blendgate_store_up 0.0" in metrics
        assert 'blendgate_store_events_total{result="lost"} 3.0' in metrics
        stats = await client.get("/v1/experiments")
        assert stats.status_code == 503 and stats.json()["error"]["code"] == "store_unavailable"


async def test_api_key_guards_the_experiment_routes(tmp_path: Path,
                                                     slow_engine: SlowSingleEngine) -> None:
    data = config_data(tmp_path)
    data["server"]["api_keys"] = ["sk-test"]
    app = create_app(write_config(tmp_path / "c.yaml", data), engine=slow_engine)
    async for client in open_client(app):
        for method, url in (("GET", "/v1/experiments"), ("POST", "/v1/feedback"),
                            ("POST", "/admin/reload")):
            assert (await client.request(method, url)).status_code == 401


async def test_store_keeps_tokens_and_latency_per_member(gateway: Any) -> None:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from ensemble.experiments.store.schema import CompletionRow

    client, app = gateway
    for i in range(12):  # some land in the ensemble arm
        await chat(client, user=f"m{i}")
    store = state_of(app).experiments.store
    await store.flush()
    analyst = create_async_engine(store.url)  # the raw rows, as an analyst sees them
    try:
        async with analyst.connect() as connection:
            rows = (await connection.execute(select(CompletionRow.__table__).where(
                CompletionRow.__table__.c.arm == "ensemble"))).all()
    finally:
        await analyst.dispose()
    assert rows
    members = rows[0].members
    # ScriptedEngine's report: two alpha candidates (0.25 s, 0.5 s), one beta failure.
    assert members["alpha"]["candidates"] == 2 and members["alpha"]["latency_s"] == 0.375
    assert members["beta"]["failures"] == 1
    assert rows[0].completion_tokens > 0


async def test_member_summary_has_tokens_per_member_and_fuser(tmp_path: Path) -> None:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from ensemble.config import StoreConfig
    from ensemble.experiments import ExperimentRuntime, Served
    from ensemble.experiments.store import ExperimentStore
    from ensemble.experiments.store.schema import CompletionRow
    from ensemble.types import (
        BlendReport,
        BlendRequest,
        Candidate,
        ChatMessage,
        MemberFailure,
        StageTimings,
        Usage,
        UsagePart,
    )

    report = BlendReport(
        candidates=[Candidate("a", 0, "x", "stop", 1.0), Candidate("a", 1, "y", "stop", 3.0)],
        ranking=None, failures=[MemberFailure("b", "BackendTimeout", "slow", 9.0)],
        fuser="llm:a", timings=StageTimings(),
        usage=[UsagePart("member", "a", Usage(10, 40)), UsagePart("fuser", "llm", Usage(50, 20))])
    store = await ExperimentStore.open(StoreConfig(url=sqlite_url(tmp_path), flush_interval_s=0.02))
    runtime = ExperimentRuntime(SlowSingleEngine(), store)  # type: ignore[arg-type]
    request = BlendRequest("blend", [ChatMessage("user", "hi")])
    runtime.record(Served("c1", request, "x", Usage(60, 60), 1.0, report))
    await store.flush()
    analyst = create_async_engine(store.url)  # the stored row's ``members`` column
    try:
        async with analyst.connect() as connection:
            rows = (await connection.execute(select(CompletionRow.__table__))).all()
    finally:
        await analyst.dispose()
        await store.aclose()
    assert [row.members for row in rows] == [{
        "a": {"candidates": 2, "latency_s": 2.0, "failures": 0, "prompt_tokens": 10,
              "completion_tokens": 40},
        "b": {"candidates": 0, "latency_s": 0.0, "failures": 1, "prompt_tokens": 0,
              "completion_tokens": 0},
        "fuser:llm": {"candidates": 0, "latency_s": 0.0, "failures": 0, "prompt_tokens": 50,
                      "completion_tokens": 20},
    }]


async def test_experiment_routes_answer_503_while_loading(tmp_path: Path,
                                                           slow_engine: SlowSingleEngine) -> None:
    app = create_app(write_config(tmp_path / "c.yaml", config_data(tmp_path)), engine=slow_engine)
    transport = httpx.ASGITransport(app=app)  # no lifespan: still "loading"
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for method, url in (("GET", "/v1/experiments"), ("POST", "/v1/feedback"),
                            ("POST", "/admin/reload")):
            response = await client.request(method, url)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "model_not_ready"


async def test_sighup_reloads_the_weights(tmp_path: Path, slow_engine: SlowSingleEngine) -> None:
    import os
    import signal

    from gateway.cli import reload_on_sighup

    path = tmp_path / "config.yaml"
    app = create_app(write_config(path, config_data(tmp_path)), engine=slow_engine,
                     config_path=path)
    async for client in open_client(app):
        reload_on_sighup(app)
        try:
            write_config(path, config_data(tmp_path, weights=(1, 0)))
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                await asyncio.sleep(0.02)
                experiment = state_of(app).experiments.experiment(EXPERIMENT)
                if experiment.arms[1].weight == 0:
                    break
            assert [a.weight for a in state_of(app).experiments.experiment(EXPERIMENT).arms] == [1, 0]
            arms = {(await chat(client, user=f"h{i}")).headers["x-blendgate-arm"]
                    for i in range(10)}
            assert arms == {"ensemble"}
        finally:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


def test_check_config_lists_the_experiment(tmp_path: Path) -> None:
    from gateway.cli import describe

    data = config_data(tmp_path, shadow={"arm": "single"})
    text = describe(write_config(tmp_path / "c.yaml", data))
    assert (f"  {EXPERIMENT}  (experiment: ensemble={ENSEMBLE} w1, single={SINGLE} w1; "
            "shadow single; judge none)") in text
