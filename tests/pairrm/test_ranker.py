"""``PairRMRanker``: the gateway's batched ranker on the tiny checkpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from ensemble.config import PairRMRankerConfig
from ensemble.rankers.base import Ranker
from ensemble.rankers.pairrm import (
    PairRM,
    PairRMRanker,
    full_matrix,
    pair_logits,
    ranks_from_scores,
    scores_from_matrix,
    wins_from_matrix,
)
from ensemble.types import ChatMessage

QUESTION = "Which planet is the largest?"
ANSWERS = ["Jupiter.", "Mars is the largest planet.", "Jupiter, about 11 Earth diameters wide.",
           "I don't know."]


@pytest.fixture
async def ranker(tiny_pairrm_hf_dir: Path) -> AsyncIterator[PairRMRanker]:
    cfg = PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir), device="cpu",
                             batch_wait_ms=50, max_batch_pairs=64)
    loaded = await PairRMRanker.load(cfg)
    yield loaded
    await loaded.aclose()


async def test_is_a_ranker_and_matches_the_full_matrix(ranker: PairRMRanker, tiny_pairrm: PairRM):
    assert isinstance(ranker, Ranker)
    ranking = await ranker.rank([ChatMessage("user", QUESTION)], ANSWERS)
    expected = scores_from_matrix(full_matrix(tiny_pairrm, [QUESTION], [ANSWERS]))[0]
    np.testing.assert_allclose(ranking.scores, expected, atol=1e-5)
    assert sorted(ranking.ranks) == list(range(1, 5)) or len(set(ranking.scores)) < 4
    assert abs(sum(ranking.scores)) < 1e-5


async def test_one_and_zero_candidates(ranker: PairRMRanker):
    one = await ranker.rank([ChatMessage("user", QUESTION)], ["only"])
    assert (one.scores, one.ranks) == ((0.0,), (1,))
    none = await ranker.rank([ChatMessage("user", QUESTION)], [])
    assert (none.scores, none.ranks) == ((), ())


async def test_concurrent_requests_share_one_batch(ranker: PairRMRanker):
    calls: list[int] = []
    process = ranker._worker._process  # count the batches the worker runs

    def counting(jobs: Sequence[tuple[tuple[str, str, str], ...]]) -> list[np.ndarray]:
        calls.append(sum(len(j) for j in jobs))
        return list(process(jobs))

    ranker._worker._process = counting
    prompts = [[ChatMessage("user", f"{QUESTION} ({i})")] for i in range(3)]
    together = await asyncio.gather(*(ranker.rank(p, ANSWERS[:3]) for p in prompts))
    assert calls == [18]  # 3 requests x 3*2 ordered pairs, one forward pool
    alone = [await ranker.rank(p, ANSWERS[:3]) for p in prompts]
    for a, b in zip(together, alone, strict=False):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        assert a.ranks == b.ranks


async def test_combined_compare_is_antisymmetric(ranker: PairRMRanker):
    msgs = [ChatMessage("user", QUESTION)]
    ab = await ranker.compare(msgs, ANSWERS[0], ANSWERS[1])
    ba = await ranker.compare(msgs, ANSWERS[1], ANSWERS[0])
    # exact up to float32 summation order (rows sit at other batch positions)
    assert ab.combined == pytest.approx(-ba.combined, abs=1e-6)
    assert ab.logit_ab == pytest.approx(ba.logit_ba, abs=1e-6)
    assert ab.logit_ab != -ab.logit_ba  # single orders carry position bias; combined cancels it
    assert ab.prob_a_better == pytest.approx(1 - ba.prob_a_better)
    ranking = await ranker.rank(msgs, ANSWERS[:2])
    assert ranking.scores[0] - ranking.scores[1] == pytest.approx(ab.combined, abs=1e-5)


def test_max_wins_counts_pairs_won_and_can_disagree_with_max_logits():
    # A beats B and C narrowly; B beats C by a lot (no position bias: M[j, i] = -M[i, j]).
    margins = np.array([[0, 0.1, 0.1], [-0.1, 0, 10.0], [-0.1, -10.0, 0]], dtype=np.float32)
    assert wins_from_matrix(margins).tolist() == [4, 2, 0]
    assert ranks_from_scores(wins_from_matrix(margins)).tolist() == [1, 2, 3]
    assert ranks_from_scores(scores_from_matrix(margins)).tolist() == [2, 1, 3]
    batch = np.stack([margins, -margins])  # [B, n, n]: the reversed world
    assert wins_from_matrix(batch).tolist() == [[4, 2, 0], [0, 2, 4]]


async def test_max_wins_mode(tiny_pairrm_hf_dir: Path, tiny_pairrm: PairRM):
    cfg = PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir), device="cpu",
                             comparison="max_wins")
    ranker = await PairRMRanker.load(cfg)
    try:
        ranking = await ranker.rank([ChatMessage("user", QUESTION)], ANSWERS)
    finally:
        await ranker.aclose()
    n = len(ANSWERS)
    wins = [0] * n
    for i in range(n):  # pair by pair, one forward pass each
        for j in range(n):
            if i != j:
                value = float(pair_logits(tiny_pairrm, [(QUESTION, ANSWERS[i], ANSWERS[j])])[0])
                wins[i] += value > 0
                wins[j] += value < 0
    assert ranking.scores == tuple(float(w) for w in wins)
    assert ranking.ranks == tuple(1 + sum(o > w for o in wins) for w in wins)
    assert sum(wins) == n * (n - 1)  # every ordered pair has one winner (no exact-zero logit)


async def test_bubble_mode_ranks_the_winner_first(tiny_pairrm_hf_dir: Path, tiny_pairrm: PairRM):
    cfg = PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir), device="cpu", comparison="bubble")
    bubble = await PairRMRanker.load(cfg)
    try:
        ranking = await bubble.rank([ChatMessage("user", QUESTION)], ANSWERS)
    finally:
        await bubble.aclose()
    assert sorted(ranking.ranks) == [1, 2, 3, 4]
    m = full_matrix(tiny_pairrm, [QUESTION], [ANSWERS])[0]
    winner = ranking.ranks.index(1)
    runner_up = ranking.ranks.index(2)  # the last candidate eliminated lost to the winner
    assert m[winner, runner_up] - m[runner_up, winner] >= 0 or np.isclose(
        m[winner, runner_up], m[runner_up, winner])


async def test_multi_turn_uses_the_template(ranker: PairRMRanker, tiny_pairrm: PairRM):
    from ensemble.rankers.pairrm import chat_prompt

    msgs = [ChatMessage("system", "Be terse."), ChatMessage("user", "hi"),
            ChatMessage("assistant", "hello"), ChatMessage("user", QUESTION)]
    prompt = chat_prompt(msgs)
    ranking = await ranker.rank(msgs, ANSWERS[:3])
    wrapped = [prompt.candidate(a) for a in ANSWERS[:3]]
    expected = scores_from_matrix(full_matrix(tiny_pairrm, [prompt.source], [wrapped]))[0]
    np.testing.assert_allclose(ranking.scores, expected, atol=1e-5)


async def test_model_failure_is_a_ranker_error(ranker: PairRMRanker, monkeypatch: pytest.MonkeyPatch):
    from ensemble.errors import RankerError

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(ranker.pairrm.model, "forward", broken)
    with pytest.raises(RankerError, match="simulated"):
        await ranker.rank([ChatMessage("user", QUESTION)], ANSWERS[:2])
