"""Pairwise verdicts from real rankers: the tiny PairRM checkpoint and the MiniLM consensus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from ensemble.config import ConsensusRankerConfig, PairRMRankerConfig
from ensemble.experiments.judge import PairwiseJudge, decide
from ensemble.rankers.base import scores_both_orders
from ensemble.rankers.factory import build_ranker
from ensemble.types import ChatMessage, Ranking
from tests.pairrm.conftest import tiny_checkpoints, tiny_pairrm_hf_dir  # noqa: F401 - fixtures

PROMPT = [ChatMessage("user", "How do I boil an egg?")]
A = "Put the egg in boiling water for about nine minutes, then cool it in cold water."
B = "Eggs are laid by hens."
FLIP = {"win": "loss", "loss": "win", "tie": "tie"}


def test_decide_keeps_float_noise_out_of_verdicts() -> None:
    assert decide(0.1 + 0.2, 0.3, tie_margin=0.0) == "tie"  # 0.30000000000000004 vs 0.3
    assert decide(0.0, 0.06, tie_margin=0.05) == "win"
    assert decide(0.06, 0.0, tie_margin=0.05) == "loss"
    assert decide(0.0, 0.05, tie_margin=0.05) == "tie"


async def test_pairrm_judge_is_antisymmetric_and_matches_its_scores(
        tiny_pairrm_hf_dir: Path) -> None:  # noqa: F811 - the fixture
    ranker = await build_ranker(PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir),
                                                   device="cpu", batch_wait_ms=0))
    try:
        judge = PairwiseJudge(ranker, tie_margin=0.0)
        forward = await judge.judge(PROMPT, A, B)
        backward = await judge.judge(PROMPT, B, A)
        # Both orders are averaged, so swapping the answers swaps the scores exactly.
        assert (backward.score_a, backward.score_b) == pytest.approx(
            (forward.score_b, forward.score_a), abs=1e-6)
        assert backward.outcome == FLIP[forward.outcome]
        # The verdict is the sign of the ranker's own (order-averaged) score difference.
        one = await ranker.rank(PROMPT, [A, B])
        two = await ranker.rank(PROMPT, [B, A])
        difference = (one.scores[1] + two.scores[0] - one.scores[0] - two.scores[1]) / 2
        assert forward.outcome == decide(0.0, difference, 0.0)
        # A margin wider than any difference makes every verdict a tie; equal answers tie.
        wide = PairwiseJudge(ranker, tie_margin=abs(difference) + 1)
        assert (await wide.judge(PROMPT, A, B)).outcome == "tie"
        assert (await judge.judge(PROMPT, A, A)).outcome == "tie"
    finally:
        await ranker.aclose()


@pytest.mark.slow
async def test_consensus_judge_ties_two_answers() -> None:
    ranker = await build_ranker(ConsensusRankerConfig())
    try:
        verdict = await PairwiseJudge(ranker, tie_margin=0.0).judge(PROMPT, A, B)
        # Each answer's score is its similarity to the other one: equal, so a tie (documented).
        assert verdict.outcome == "tie"
        assert verdict.score_a == verdict.score_b
    finally:
        await ranker.aclose()


@pytest.fixture(scope="module")
def qwen_judge_url() -> Iterator[str]:
    """Qwen2.5-Coder-0.5B (installed by make setup) behind a real llama.cpp OpenAI server."""
    from ensemble.backends.model_path import resolve_gguf
    from tests.fixtures.llama_server import start_llama_server

    with start_llama_server(resolve_gguf("package:qwen2.5-coder-0.5b"), parallel=2,
                            context_length=4096) as url:
        yield url


@pytest.mark.slow
async def test_llm_judge_over_a_real_llama_cpp_server(qwen_judge_url: str) -> None:
    from ensemble.backends.openai_compat import OpenAICompatBackend
    from ensemble.config import LLMJudgeRankerConfig, OpenAIBackendConfig

    # generous timeouts: the CI host is a shared 2-core machine
    backend = OpenAICompatBackend("qwen", OpenAIBackendConfig(
        base_url=qwen_judge_url, model="qwen", timeout_s=300))
    cfg = LLMJudgeRankerConfig(backend="qwen", mode="pairwise", params={"cache_prompt": False},
                               timeout_s=300)
    ranker = await build_ranker(cfg, {"qwen": backend})
    try:
        judge = PairwiseJudge(ranker, tie_margin=0.1)
        question = [ChatMessage("user", "What is the capital of France?")]
        good, bad = "The capital of France is Paris.", "I like turtles and the colour green."
        assert (await judge.judge(question, bad, good)).outcome == "win"
        assert (await judge.judge(question, good, bad)).outcome == "loss"
    finally:
        await ranker.aclose()
        await backend.aclose()


class _CountingRanker:
    """Scores by length; counts its calls. ``order_invariant`` as given."""

    name = "counting"

    def __init__(self, order_invariant: bool) -> None:
        self.order_invariant = order_invariant
        self.calls = 0

    async def rank(self, messages: object, candidates: list[str]) -> Ranking:
        self.calls += 1
        scores = tuple(float(len(c)) for c in candidates)
        return Ranking(scores=scores, ranks=tuple(1 + sum(t > s for t in scores) for s in scores))

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(("invariant", "calls"), [(True, 1), (False, 2)])
async def test_an_order_invariant_ranker_is_asked_once(invariant: bool, calls: int) -> None:
    ranker = _CountingRanker(invariant)
    verdict = await PairwiseJudge(ranker, tie_margin=0.0).judge(PROMPT, B, A)
    assert (verdict.outcome, verdict.score_a, verdict.score_b) == ("win", len(B), len(A))
    assert ranker.calls == calls


def test_which_rankers_score_both_orders(tmp_path: Path) -> None:
    from ensemble.config import LLMJudgeRankerConfig
    from ensemble.rankers.consensus import ConsensusRanker
    from ensemble.rankers.llm_judge import build_llm_judge
    from ensemble.rankers.pairrm.ranker import PairRMRanker
    from ensemble.rankers.passthrough import PassthroughRanker
    from ensemble.rankers.reward_model import RewardModelRanker

    assert all(scores_both_orders(cls) for cls in  # type: ignore[arg-type]
               (ConsensusRanker, PairRMRanker, RewardModelRanker))
    assert not scores_both_orders(PassthroughRanker())
    backend = SimpleNamespace(name="judge")  # never called: only the constructor runs
    for mode in ("pointwise", "pairwise"):
        cfg = LLMJudgeRankerConfig(backend="judge", mode=mode)
        assert scores_both_orders(build_llm_judge(cfg, backend))  # type: ignore[arg-type]
        # ranking by position on failure would make a one-call verdict positional
        positional = build_llm_judge(cfg, backend, PassthroughRanker())  # type: ignore[arg-type]
        assert not scores_both_orders(positional)
