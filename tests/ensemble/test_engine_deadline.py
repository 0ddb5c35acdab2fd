"""``deadline_s`` bounds the ranking stage too (the fuse stage is tested over HTTP in
tests/gateway/test_reliability.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from ensemble.config import RankerConfig, parse_config
from ensemble.engine import BlendEngine
from ensemble.errors import DeadlineExceeded
from ensemble.fallbacks import Fallback
from ensemble.rankers.base import Ranker
from ensemble.types import BlendRequest, ChatMessage, Ranking, SamplingParams
from tests.ensemble.scripted import ScriptedBackend

DEADLINE_S = 0.3


class StuckRanker:
    name = "stuck"

    def __init__(self) -> None:
        self.cancelled = 0

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def engine(on_deadline: str, ranker: StuckRanker) -> BlendEngine:
    config = parse_config({
        "backends": {n: {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": n}
                     for n in ("a", "b")},
        "models": [{"type": "ensemble", "id": "blend", "ranker": {"type": "consensus"},
                    "deadline_s": DEADLINE_S, "on_deadline": on_deadline,
                    "members": [{"backend": "a"}, {"backend": "b"}]}],
    })

    async def build(cfg: RankerConfig) -> Ranker:
        return ranker

    backends = {"a": ScriptedBackend("a", texts=("first",)),
                "b": ScriptedBackend("b", texts=("second",))}
    return await BlendEngine.from_config(config, backends=backends, ranker_builder=build)


def request() -> BlendRequest:
    return BlendRequest("blend", [ChatMessage("user", "hi")], SamplingParams())


async def test_a_stuck_ranker_is_cut_by_the_deadline() -> None:
    ranker = StuckRanker()
    async with await engine("error", ranker) as blend:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="while ranking"):
            await blend.complete(request())
        assert time.monotonic() - started < DEADLINE_S + 1.0
    assert ranker.cancelled == 1


async def test_best_candidate_without_a_ranking_is_the_members_order() -> None:
    async with await engine("best_candidate", StuckRanker()) as blend:
        result = await blend.complete(request())
    assert result.choices[0].text == "first"
    assert result.report is not None and result.report.fuser == Fallback.DEADLINE.label()
    assert result.report.ranking is None
