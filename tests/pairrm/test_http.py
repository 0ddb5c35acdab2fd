"""``POST /v1/rank`` and ``/v1/compare`` through the real gateway app, tiny PairRM behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from ensemble.config import PairRMRankerConfig
from ensemble.rankers.base import Ranker
from ensemble.rankers.pairrm import PairRM, PairRMRanker, full_matrix, scores_from_matrix
from ensemble.types import ChatMessage, Ranking, ServedModel
from gateway.app import create_app
from gateway.config import parse_config
from gateway.state import state_of

PROMPT = "hello, how are you!"
CANDS = ["get out!", "hi! I am fine, thanks!", "bye!"]


@dataclass
class RankingOnlyEngine:
    """The part of ``BlendEngine`` the ranking routes use; chat is not exercised here."""

    ranker: Ranker | None

    def models(self) -> list[ServedModel]:
        return []

    def service_ranker(self) -> Ranker | None:
        return self.ranker

    async def complete(self, request: object) -> object:  # pragma: no cover - not routed here
        raise NotImplementedError

    def stream(self, request: object) -> object:  # pragma: no cover - not routed here
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class ConstantScores:
    """A pointwise ranker double (no ``compare``): scores = candidate length."""

    name = "lengths"

    async def rank(self, messages: object, candidates: list[str]) -> Ranking:
        return Ranking(scores=tuple(float(len(c)) for c in candidates),
                       ranks=tuple(1 + sum(len(o) > len(c) for o in candidates) for c in candidates))

    async def aclose(self) -> None:
        return None


def _config(max_candidates: int = 9):
    return parse_config({"server": {"api_keys_env": None, "max_candidates": max_candidates},
                         "backends": {"x": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                            "model": "x"}}})


async def _client(ranker: Ranker | None, **config: int) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(_config(**config), engine=RankingOnlyEngine(ranker))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def pairrm_ranker(tiny_pairrm_hf_dir: Path) -> AsyncIterator[PairRMRanker]:
    ranker = await PairRMRanker.load(PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir), device="cpu"))
    yield ranker
    await ranker.aclose()


@pytest.fixture
async def client(pairrm_ranker: PairRMRanker) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(pairrm_ranker):
        yield c


async def test_rank_with_prompt(client: httpx.AsyncClient, tiny_pairrm: PairRM):
    response = await client.post("/v1/rank", json={"prompt": PROMPT, "candidates": CANDS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "ranking" and body["model"].startswith("pairrm:")
    expected = scores_from_matrix(full_matrix(tiny_pairrm, [PROMPT], [CANDS]))[0]
    np.testing.assert_allclose(body["scores"], expected, atol=1e-5)
    assert len(body["ranks"]) == 3 and min(body["ranks"]) == 1


async def test_rank_with_messages_equals_prompt(client: httpx.AsyncClient):
    by_prompt = (await client.post("/v1/rank", json={"prompt": PROMPT, "candidates": CANDS})).json()
    by_messages = (await client.post("/v1/rank", json={
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        "candidates": CANDS})).json()
    np.testing.assert_allclose(by_messages["scores"], by_prompt["scores"], atol=1e-6)


async def test_compare_both_orders_and_combined(client: httpx.AsyncClient, pairrm_ranker: PairRMRanker):
    response = await client.post("/v1/compare", json={"prompt": "hello!", "a": "hi!", "b": "f**k off!"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["logit"] == pytest.approx(body["logit_ab"] - body["logit_ba"])
    assert body["probability"] == pytest.approx(1 / (1 + np.exp(-body["logit"] / 2)))
    assert body["prob_ab"] == pytest.approx(1 / (1 + np.exp(-body["logit_ab"])))
    assert body["a_better"] == (body["logit"] > 0)
    swapped = (await client.post("/v1/compare", json={"prompt": "hello!", "a": "f**k off!", "b": "hi!"})).json()
    assert swapped["logit"] == pytest.approx(-body["logit"], abs=1e-6)
    direct = await pairrm_ranker.compare([ChatMessage("user", "hello!")], "hi!", "f**k off!")
    assert body["logit_ab"] == pytest.approx(direct.logit_ab, abs=1e-6)


@pytest.mark.parametrize("payload,param", [
    ({"candidates": ["a"]}, None),  # neither prompt nor messages
    ({"prompt": "p", "messages": [{"role": "user", "content": "p"}], "candidates": ["a"]}, None),
    ({"prompt": "p", "candidates": []}, "candidates"),
    ({"prompt": "p", "candidates": [f"c{i}" for i in range(10)]}, "candidates"),
])
async def test_rank_rejects_bad_requests_in_openai_shape(client: httpx.AsyncClient, payload: dict, param: str | None):
    response = await client.post("/v1/rank", json=payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_compare_needs_a_and_b(client: httpx.AsyncClient):
    response = await client.post("/v1/compare", json={"prompt": "p", "a": "x"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "b"


async def test_no_service_ranker_is_501():
    async for client in _client(None):
        response = await client.post("/v1/rank", json={"prompt": "p", "candidates": ["a"]})
        assert response.status_code == 501
        assert response.json()["error"]["code"] == "ranker_not_configured"


async def test_compare_with_a_pointwise_ranker():
    async for client in _client(ConstantScores()):
        body = (await client.post("/v1/compare", json={"prompt": "p", "a": "long answer", "b": "x"})).json()
        assert body["logit"] == 10.0 and body["a_better"] is True and body["logit_ab"] is None
        ranked = (await client.post("/v1/rank", json={"prompt": "p", "candidates": ["aa", "a", "aaa"]})).json()
        assert ranked["ranks"] == [2, 3, 1]


async def test_rank_service_built_by_the_real_engine(tiny_pairrm_hf_dir: Path, tiny_pairrm: PairRM):
    """config.rank_service -> BlendEngine -> RankerCache -> PairRMRanker.load -> /v1/rank."""
    config = parse_config({
        "server": {"api_keys_env": None},
        "backends": {"x": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "x"}},
        "rank_service": {"type": "pairrm", "checkpoint": str(tiny_pairrm_hf_dir), "device": "cpu"},
    })
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://test") as client:
        assert await state_of(app).loading.wait() == "ok"  # models load in the background
        response = await client.post("/v1/rank", json={"prompt": PROMPT, "candidates": CANDS})
    assert response.status_code == 200, response.text
    expected = scores_from_matrix(full_matrix(tiny_pairrm, [PROMPT], [CANDS]))[0]
    np.testing.assert_allclose(response.json()["scores"], expected, atol=1e-5)
