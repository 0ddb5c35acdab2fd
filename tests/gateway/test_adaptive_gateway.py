"""An adaptive ensemble's path over HTTP: the transparency field, ``/metrics``, the access log,
streaming, and two policies compared as the arms of an experiment.

The real ``BlendEngine`` over the fake upstreams (no model loads): ``hedge`` asks a good and a
hanging member and answers with the first valid candidate; ``voter`` votes between three
samples. Without the policies both would wait for the hanging member (or fuse), so every
assertion on ``path`` fails with them removed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.cli import describe
from gateway.config import GatewayConfig, parse_config
from gateway.state import state_of
from gateway.testing import DEFAULT_TEXTS, FakeUpstreams
from tests.experiments.conftest import sqlite_url

ASK = [{"role": "user", "content": "Tell me about foxes."}]


def adaptive_config(up: FakeUpstreams, tmp_path: Path) -> GatewayConfig:
    def backend(url: str) -> dict[str, Any]:
        return {"kind": "openai", "base_url": url, "model": "fake", "timeout_s": 30,
                "connect_timeout_s": 1, "expose": False}

    plain = {"type": "ensemble", "ranker": {"type": "none"}, "fuser": {"type": "none"},
             "member_timeout_s": 30, "deadline_s": 30}
    return parse_config({
        "server": {"api_keys_env": None},
        "backends": {"good": backend(up.ok), "stuck": backend(up.hang)},
        "models": [
            {**plain, "id": "hedge", "strategy": "hedged",
             "members": [{"backend": "stuck"}, {"backend": "good"}]},
            {**plain, "id": "voter", "strategy": "vote", "members": [{"backend": "good",
                                                                       "samples": 3}]},
        ],
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.02},
        # two policies as the arms of one experiment: the path says which one answered
        "experiments": [{"id": "policies", "judge": {"type": "none"},
                         "arms": [{"name": "hedged", "model": "hedge", "weight": 1},
                                  {"name": "vote", "model": "voter", "weight": 1}]}],
    })


@pytest.fixture
async def http(fake_upstreams: FakeUpstreams, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(adaptive_config(fake_upstreams, tmp_path))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30
    ) as client:
        assert await state_of(app).loading.wait() == "ok"
        yield client


async def test_hedged_path_in_the_field_the_metrics_and_the_access_log(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blendgate.access")
    body = (await http.post("/v1/chat/completions", json={
        "model": "hedge", "messages": ASK, "blend": {"return_candidates": True}})).json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_TEXTS[0]
    path = body["blend"]["path"]
    assert (path["path"], path["fused"], path["stage"]) == ("hedged", False, 0)
    assert [f["type"] for f in body["blend"]["failures"]] == ["HedgeCut"]
    assert body["blend"]["fuser"] == "none (hedged)"
    metrics = (await http.get("/metrics")).text
    assert re.search(r'blendgate_answer_path_total\{early_stop="false",model="hedge",'
                     r'path="hedged"\} 1\.0', metrics)
    assert re.search(r'blendgate_answer_path_total\{early_stop="false",model="voter",'
                     r'path="vote"\} 0\.0', metrics)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "blendgate.access"]
    assert " path=hedged " in line


async def test_a_vote_streams_its_candidate_with_the_path_in_the_last_chunk(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/v1/chat/completions", json={
        "model": "voter", "messages": ASK, "stream": True, "blend": {"return_candidates": True}})
    chunks = [json.loads(line[len("data: "):]) for line in response.text.splitlines()
              if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == DEFAULT_TEXTS[0]
    assert response.text.rstrip().endswith("data: [DONE]")
    path = chunks[-1]["blend"]["path"]
    assert path["path"] == "vote" and path["reason"].startswith("3 of 3 votes")


async def test_two_policies_compared_as_experiment_arms(http: httpx.AsyncClient) -> None:
    seen: dict[str, set[str]] = {}
    for user in range(12):
        body = (await http.post("/v1/chat/completions", json={
            "model": "policies", "messages": ASK, "user": f"user-{user}",
            "blend": {"return_candidates": True}})).json()
        seen.setdefault(body["blend"]["experiment"]["arm"], set()).add(
            body["blend"]["path"]["path"])
    assert seen == {"hedged": {"hedged"}, "vote": {"vote"}}


def test_check_config_names_each_ensembles_policy(fake_upstreams: FakeUpstreams,
                                                  tmp_path: Path) -> None:
    lines = describe(adaptive_config(fake_upstreams, tmp_path)).splitlines()
    assert any(line.startswith("  hedge ") and line.endswith("; strategy hedged)")
               for line in lines)
    assert any(line.startswith("  voter ") and line.endswith("; strategy vote)")
               for line in lines)
