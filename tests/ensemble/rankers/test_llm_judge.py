"""The llm_judge ranker: verdict log-probabilities, both modes, position-bias cancellation,
the fallback chain, config checks. A scripted judge backend makes the arithmetic exact; the
real-model tests (slow) use Qwen2.5-Coder-0.5B behind a real llama.cpp OpenAI server."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from ensemble.backends.model_path import resolve_gguf
from ensemble.backends.openai_compat import OpenAICompatBackend
from ensemble.config import LLMJudgeRankerConfig, OpenAIBackendConfig
from ensemble.errors import BackendConnectError, ConfigError, RankerError
from ensemble.rankers.factory import RankerCache, build_ranker
from ensemble.rankers.llm_judge import PairwiseJudge, PointwiseJudge, verdict_logit
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta
from gateway.app import create_app
from gateway.config import parse_config
from gateway.testing import FakeUpstreams
from tests.fixtures.llama_server import start_llama_server

QUESTION = [ChatMessage("user", "What is the capital of France?")]
GOOD = "The capital of France is Paris."
BAD = "I like turtles and the colour green."
QUALITY = {GOOD: 2.0, "Paris, I think.": 1.0, BAD: -1.0}
A_BIAS = 3.0  # the scripted pairwise judge prefers whatever it reads first by this much
SLOW_S = 300.0  # judge timeout for the real model: a shared 2-core host can take minutes


def logprobs(token: str, top: dict[str, float]) -> dict[str, object]:
    """OpenAI's ``choice.logprobs`` for a one-token answer."""
    return {"content": [{"token": token, "logprob": top[token], "top_logprobs": [
        {"token": t, "logprob": lp} for t, lp in top.items()]}]}


def verdict(positive: str, negative: str, logit: float) -> Completion:
    """A one-token completion whose verdict log-odds are exactly ``logit``."""
    pos, neg = -math.log1p(math.exp(-logit)), -math.log1p(math.exp(logit))
    token = positive if logit >= 0 else negative
    return Completion(token, "length", logprobs=logprobs(
        token, {positive: pos, negative: neg, "The": -9.0}))


@dataclass
class ScriptedJudge:
    """A judge backend: pointwise P(Yes) from QUALITY; pairwise prefers A by A_BIAS."""

    name: str = "scripted"
    fail: BaseException | None = None
    delay_s: float = 0.0
    prompts: list[list[ChatMessage]] = field(default_factory=list)
    params: list[SamplingParams] = field(default_factory=list)

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams,
                       n: int = 1) -> list[Completion]:
        self.prompts.append(list(messages))
        self.params.append(params)
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        text = messages[-1].content
        if "<reply A>" in text:
            a = re.search(r"<reply A>\n(.*)\n</reply A>", text, re.DOTALL)
            b = re.search(r"<reply B>\n(.*)\n</reply B>", text, re.DOTALL)
            assert a and b
            return [verdict("A", "B", QUALITY[a[1]] - QUALITY[b[1]] + A_BIAS)]
        reply = re.search(r"<reply>\n(.*)\n</reply>", text, re.DOTALL)
        assert reply
        return [verdict("Yes", "No", QUALITY[reply[1]])]

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams,
               n: int = 1) -> AsyncIterator[TextDelta]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def judge_cfg(**fields: object) -> LLMJudgeRankerConfig:
    return LLMJudgeRankerConfig.model_validate({"backend": "judge", **fields})


# --------------------------------------------------------------------------- verdicts


def test_verdict_logit_sums_spellings_and_floors_a_missing_token() -> None:
    both = Completion("Yes", logprobs=logprobs("Yes", {
        "Yes": math.log(0.5), " yes": math.log(0.1), "No": math.log(0.2), "x": math.log(0.05)}))
    assert verdict_logit(both, ("Yes", "No")) == pytest.approx(math.log(0.6 / 0.2))
    missing = Completion("Yes", logprobs=logprobs("Yes", {
        "Yes": math.log(0.9), "Sure": math.log(0.01)}))
    assert verdict_logit(missing, ("Yes", "No")) == pytest.approx(math.log(0.9 / 0.01))
    neither = Completion("Hmm", logprobs=logprobs("Hmm", {"Hmm": -0.1}))
    assert verdict_logit(neither, ("Yes", "No")) == 0.0
    with pytest.raises(ValueError, match="no logprobs"):
        verdict_logit(Completion("Yes"), ("Yes", "No"))


# --------------------------------------------------------------------------- modes


async def test_pointwise_scores_each_candidate_with_one_verdict_call() -> None:
    backend = ScriptedJudge()
    judge = PointwiseJudge(judge_cfg(), backend)
    ranking = await judge.rank(QUESTION, [BAD, GOOD, "Paris, I think."])
    assert ranking.scores == (-1.0, 2.0, 1.0) and ranking.ranks == (3, 1, 2)
    assert len(backend.prompts) == 3
    params = backend.params[0]
    assert (params.max_tokens, params.temperature) == (1, 0.0)
    assert (params.logprobs, params.top_logprobs, params.extra) == (True, 20, {})
    assert backend.prompts[0][0].role == "system"
    assert "User: What is the capital of France?" in backend.prompts[0][1].content


async def test_pairwise_cancels_a_judge_biased_to_the_first_reply() -> None:
    backend = ScriptedJudge()
    judge = PairwiseJudge(judge_cfg(mode="pairwise"), backend)
    same = await judge.compare(QUESTION, GOOD, GOOD)
    assert same.logit_ab == pytest.approx(A_BIAS) and same.logit_ba == pytest.approx(A_BIAS)
    assert same.combined == 0.0  # the bias alone says "A" both times: no preference left
    forward, backward = (await judge.compare(QUESTION, GOOD, BAD),
                         await judge.compare(QUESTION, BAD, GOOD))
    assert forward.combined == pytest.approx(2 * (QUALITY[GOOD] - QUALITY[BAD]))
    assert forward.combined == -backward.combined  # symmetric after both orders
    assert forward.logit_ab == backward.logit_ba
    ranking = await judge.rank(QUESTION, [BAD, GOOD, "Paris, I think."])
    assert ranking.ranks == (3, 1, 2)
    # mean combined logit against the two others: 2 * (q_i - mean of the others' q)
    assert ranking.scores == (-5.0, 4.0, 1.0)
    assert len(backend.prompts) == 2 + 2 + 2 + 6  # 3 compares, then 3 pairs x 2 orders


async def test_identical_candidates_tie_and_keep_their_order() -> None:
    judge = PairwiseJudge(judge_cfg(mode="pairwise"), ScriptedJudge())
    ranking = await judge.rank(QUESTION, [GOOD, BAD, GOOD])
    assert ranking.scores[0] == ranking.scores[2] and ranking.ranks == (1, 3, 1)
    assert ranking.order() == [0, 2, 1]


async def test_calls_run_concurrently_up_to_max_concurrency() -> None:
    backend = ScriptedJudge(delay_s=0.2)
    judge = PointwiseJudge(judge_cfg(max_concurrency=4), backend)
    started = asyncio.get_running_loop().time()
    await judge.rank(QUESTION, [GOOD, BAD, "Paris, I think.", GOOD])
    assert asyncio.get_running_loop().time() - started < 0.6  # 4 x 0.2 s one at a time


async def test_a_custom_template_and_verdicts_are_used() -> None:
    backend = ScriptedJudge()
    cfg = judge_cfg(template="Q: {conversation}\n<reply>\n{candidate}\n</reply>\nGood? Yes/No",
                    system="", verdicts=["Yes", "No"])
    await PointwiseJudge(cfg, backend).rank(QUESTION, [GOOD, BAD])
    assert [m.role for m in backend.prompts[0]] == ["user"]
    assert backend.prompts[0][0].content.startswith("Q: User: What is the capital")


def test_template_checks() -> None:
    with pytest.raises(ValueError, match="lacks {candidate}"):
        judge_cfg(template="{conversation} only")
    with pytest.raises(ValueError, match="lacks {a}, {b}"):
        judge_cfg(mode="pairwise", template="{conversation} {candidate}")
    with pytest.raises(ValueError, match="literal braces"):
        judge_cfg(template="{conversation} {candidate} {oops}")


# --------------------------------------------------------------------------- fallback


async def test_a_failing_judge_falls_back_to_the_next_ranker() -> None:
    backend = ScriptedJudge(fail=BackendConnectError("refused", backend="scripted"))
    cache = RankerCache(backends={"judge": backend})
    judge = await cache.get(judge_cfg(fallback={"type": "none"}))
    ranking = await judge.rank(QUESTION, [BAD, GOOD, GOOD])
    assert ranking.ranks == (1, 2, 3)  # the none ranker: the members' order
    pairwise = await cache.get(judge_cfg(mode="pairwise", fallback={"type": "none"}))
    comparison = await pairwise.compare(QUESTION, GOOD, BAD)  # type: ignore[attr-defined]
    assert comparison.combined == 1.0  # from the none ranker's scores (2, 1)
    await cache.aclose()


async def test_a_slow_judge_falls_back_after_timeout() -> None:
    backend = ScriptedJudge(delay_s=5)
    judge = await build_ranker(judge_cfg(timeout_s=0.2, fallback={"type": "none"}),
                               {"judge": backend})
    started = asyncio.get_running_loop().time()
    assert (await judge.rank(QUESTION, [BAD, GOOD])).ranks == (1, 2)
    assert asyncio.get_running_loop().time() - started < 2


async def test_without_fallback_a_failure_is_a_ranker_error() -> None:
    backend = ScriptedJudge(fail=BackendConnectError("refused", backend="scripted"))
    judge = await build_ranker(judge_cfg(), {"judge": backend})
    with pytest.raises(RankerError, match="llm_judge:scripted:pointwise: BackendConnectError"):
        await judge.rank(QUESTION, [BAD, GOOD])


async def test_dead_judge_server_falls_back(fake_upstreams: FakeUpstreams) -> None:
    backend = OpenAICompatBackend("dead", OpenAIBackendConfig(
        base_url=fake_upstreams.refused, model="judge"))
    judge = await build_ranker(judge_cfg(backend="dead", fallback={"type": "none"}),
                               {"dead": backend})
    assert (await judge.rank(QUESTION, [BAD, GOOD])).ranks == (1, 2)
    await backend.aclose()


async def test_fallback_chain_shares_the_cache_and_unknown_backends_are_refused() -> None:
    cache = RankerCache(backends={"judge": ScriptedJudge()})
    outer = judge_cfg(fallback=judge_cfg(mode="pairwise", fallback={"type": "none"}))
    first = await cache.get(outer)
    assert await cache.get(outer.fallback) is first.fallback  # type: ignore[arg-type, attr-defined]
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        await build_ranker(judge_cfg(backend="nope"), {"judge": ScriptedJudge()})
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        parse_config({"backends": {}, "rank_service": {"type": "llm_judge", "backend": "nope"}})
    await cache.aclose()


# --------------------------------------------------------------------------- real judge


@pytest.fixture(scope="module")
def qwen_server_url() -> Iterator[str]:
    """Qwen2.5-Coder-0.5B (installed by make setup) behind a real llama.cpp OpenAI server."""
    with start_llama_server(resolve_gguf("package:qwen2.5-coder-0.5b"), parallel=4,
                            context_length=4096) as url:
        yield url


def qwen_backend(url: str) -> OpenAICompatBackend:
    return OpenAICompatBackend("qwen", OpenAIBackendConfig(base_url=url, model="qwen",
                                                           timeout_s=SLOW_S))


@pytest.mark.slow
async def test_real_judge_pointwise_prefers_the_right_answer(qwen_server_url: str) -> None:
    backend = qwen_backend(qwen_server_url)
    judge = await build_ranker(judge_cfg(backend="qwen", timeout_s=SLOW_S), {"qwen": backend})
    ranking = await judge.rank(QUESTION, [BAD, GOOD])
    assert ranking.ranks == (2, 1), ranking
    assert all(math.isfinite(s) for s in ranking.scores)
    await backend.aclose()


@pytest.mark.slow
async def test_real_judge_pairwise_both_orders(qwen_server_url: str) -> None:
    backend = qwen_backend(qwen_server_url)
    # Without llama.cpp's prompt cache a prompt's logprobs do not depend on what ran before.
    cfg = judge_cfg(backend="qwen", mode="pairwise", params={"cache_prompt": False},
                    timeout_s=SLOW_S)
    judge = await build_ranker(cfg, {"qwen": backend})
    forward = await judge.compare(QUESTION, GOOD, BAD)  # type: ignore[attr-defined]
    backward = await judge.compare(QUESTION, BAD, GOOD)  # type: ignore[attr-defined]
    assert forward.combined > 0 > backward.combined, (forward, backward)
    # The same two calls, swapped. On a fresh server they give identical logprobs; after other
    # requests, llama.cpp's batching and KV placement move them by up to ~0.1 (seen here).
    assert forward.combined == pytest.approx(-backward.combined, abs=0.15), (forward, backward)
    same = await judge.compare(QUESTION, GOOD, GOOD)  # type: ignore[attr-defined]
    # this judge says "A" for two identical replies (logit ~0.5-0.7); both orders cancel it
    assert abs(same.combined) < 0.15 < same.logit_ab, same
    ranking = await judge.rank(QUESTION, [BAD, GOOD])
    assert ranking.ranks == (2, 1)
    await backend.aclose()


@pytest.mark.slow
async def test_real_judge_behind_v1_rank(qwen_server_url: str) -> None:
    config = parse_config({
        "server": {"api_keys_env": None},
        "backends": {"qwen": {"kind": "openai", "base_url": qwen_server_url, "model": "qwen",
                              "timeout_s": SLOW_S, "expose": False}},
        "rank_service": {"type": "llm_judge", "backend": "qwen", "timeout_s": SLOW_S},
    })
    app = create_app(config)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post("/v1/rank", json={
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "candidates": [BAD, GOOD]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "llm_judge:qwen:pointwise" and body["ranks"] == [2, 1]
