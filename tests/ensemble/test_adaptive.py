"""Adaptive ensembling (ensemble/adaptive/, ensemble/selection.py) on scripted members.

Each policy test asserts what only the policy does (the fuser not called, a member never
asked or cancelled, the path in the report); the ``*_off`` tests run the same members with
the policy removed and see today's blend instead, so each assertion fails without its policy.
The similarity is a stand-in for the consensus ranker: equal texts are similar (1.0), others
not (0.0), and scores are its MBR scores (``mbr_scores``), so every threshold below is
compared with values far from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from ensemble.adaptive.vote import majority, normalise
from ensemble.config import BlendgateConfig, NoRankerConfig, RankerConfig, parse_config
from ensemble.engine import BlendEngine
from ensemble.errors import ConfigError
from ensemble.rankers.passthrough import PassthroughRanker
from ensemble.rankers.similarity import SimilarityMatrix, largest_agreeing, mbr_scores
from ensemble.types import (
    AnswerPath,
    BlendRequest,
    Candidate,
    ChatMessage,
    Completion,
    Ranking,
    SamplingParams,
    StreamEnd,
    TextDelta,
)
from tests.ensemble.scripted import ScriptedBackend

ASK = [ChatMessage("user", "Is this review positive or negative? 'Loved it.'")]


class EqualTextSimilarity:
    """Consensus stand-in: similarity 1.0 for equal texts, 0.0 otherwise; MBR scores, or
    fixed ``scores`` per text when given (to set a margin)."""

    name = "consensus"

    def __init__(self, scores: dict[str, float] | None = None) -> None:
        self.scores = scores
        self.asked: list[list[str]] = []

    async def similarities(self, messages: Sequence[ChatMessage],
                           candidates: Sequence[str]) -> SimilarityMatrix:
        self.asked.append(list(candidates))
        return tuple(tuple(1.0 if a == b else 0.0 for b in candidates) for a in candidates)

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        if self.scores is not None:
            scores = tuple(self.scores[c] for c in candidates)
        else:
            scores = mbr_scores(await self.similarities(messages, candidates))
        return Ranking(scores, tuple(1 + sum(o > s for o in scores) for s in scores))

    async def aclose(self) -> None:
        return None


def config(**ensemble: Any) -> BlendgateConfig:
    blend = {
        "id": "blend", "type": "ensemble",
        "members": [{"backend": "a"}, {"backend": "b"}, {"backend": "c"}],
        "ranker": {"type": "consensus"},
        "fuser": {"type": "llm", "backend": "synth"},
        "top_k": 3, **ensemble,
    }
    return parse_config({
        "backends": {name: {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": name}
                     for name in ("a", "b", "c", "cheap", "synth")},
        "models": [blend],
    })


def members(a: str = "Positive.", b: str = "positive", c: str = "Negative", *,
            cheap: Sequence[str] = ("positive",), c_delay: float = 0.0,
            a_delay: float = 0.0) -> dict[str, ScriptedBackend]:
    return {
        "a": ScriptedBackend("a", texts=(a,), delay_s=a_delay),
        "b": ScriptedBackend("b", texts=(b,)),
        "c": ScriptedBackend("c", texts=(c,), delay_s=c_delay),
        "cheap": ScriptedBackend("cheap", texts=tuple(cheap)),
        "synth": ScriptedBackend("synth", texts=("Fused: positive.",)),
    }


async def engine(cfg: BlendgateConfig, made: dict[str, ScriptedBackend],
                 ranker: EqualTextSimilarity | None = None) -> BlendEngine:
    fake = ranker or EqualTextSimilarity()

    async def build(_: RankerConfig) -> EqualTextSimilarity:
        return fake

    return await BlendEngine.from_config(cfg, backends=made, ranker_builder=build)


def ask(**params: Any) -> BlendRequest:
    return BlendRequest("blend", ASK, SamplingParams(**params))


# ------------------------------------------------------------------- skip fusion


async def test_skip_fusion_by_margin_answers_with_the_top_candidate_unfused() -> None:
    made = members("Positive.", "positive", "Negative")
    scores = {"Positive.": 0.9, "positive": 0.3, "Negative": 0.1}  # margin 0.6
    async with await engine(config(skip_fusion={"margin": 0.2}), made,
                            EqualTextSimilarity(scores)) as served:
        result = await served.complete(ask())
    assert result.choices[0].text == "Positive."
    assert made["synth"].calls == []
    assert result.report is not None
    path = result.report.path
    assert (path.path, path.fused, path.margin) == (AnswerPath.SKIP_FUSION, False,
                                                   pytest.approx(0.6))
    assert result.report.fuser == "none (skip_fusion)"


async def test_skip_fusion_fuses_when_the_margin_is_small() -> None:
    made = members()
    scores = {"Positive.": 0.5, "positive": 0.45, "Negative": 0.1}  # margin 0.05
    async with await engine(config(skip_fusion={"margin": 0.2}), made,
                            EqualTextSimilarity(scores)) as served:
        result = await served.complete(ask())
    assert result.choices[0].text == "Fused: positive."
    assert result.report is not None and result.report.path.path is AnswerPath.FUSED
    assert "margin 0.05 < 0.2" in result.report.path.reason


async def test_skip_fusion_by_agreement_uses_the_consensus_similarity() -> None:
    made = members("positive", "positive", "negative")  # top agreement: 0.5
    async with await engine(config(skip_fusion={"agreement": 0.4}), made) as served:
        agreed = await served.complete(ask())
    made = members("positive", "positive", "negative")
    async with await engine(config(skip_fusion={"agreement": 0.9}), made) as served:
        fused = await served.complete(ask())
    assert agreed.report is not None and fused.report is not None
    assert agreed.report.path.path is AnswerPath.SKIP_FUSION
    assert agreed.report.path.agreement == 0.5 and agreed.choices[0].text == "positive"
    assert fused.report.path.path is AnswerPath.FUSED


async def test_agreement_with_another_ranker_asks_the_similarity_model() -> None:
    similarity = EqualTextSimilarity()

    async def build(cfg: RankerConfig) -> Any:
        return PassthroughRanker() if isinstance(cfg, NoRankerConfig) else similarity

    made = members("positive", "positive", "negative")
    cfg = config(ranker={"type": "none"}, skip_fusion={"agreement": 0.4})
    async with await BlendEngine.from_config(cfg, backends=made, ranker_builder=build) as served:
        result = await served.complete(ask())
    assert similarity.asked == [["positive", "positive", "negative"]]
    assert result.report is not None and result.report.path.agreement == 0.5
    assert result.report.path.path is AnswerPath.SKIP_FUSION


async def test_without_skip_fusion_a_confident_ranking_is_still_fused() -> None:
    made = members()
    scores = {"Positive.": 0.9, "positive": 0.3, "Negative": 0.1}
    async with await engine(config(), made, EqualTextSimilarity(scores)) as served:
        result = await served.complete(ask())
    assert result.choices[0].text == "Fused: positive."
    assert len(made["synth"].calls) == 1
    assert result.report is not None and result.report.path.path is AnswerPath.FUSED


async def test_a_skipped_fusion_streams_the_candidate_with_its_path() -> None:
    made = members()
    scores = {"Positive.": 0.9, "positive": 0.3, "Negative": 0.1}
    async with await engine(config(skip_fusion={"margin": 0.2}), made,
                            EqualTextSimilarity(scores)) as served:
        events = [e async for e in served.stream(ask())]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert [(d.text, d.finish_reason) for d in deltas] == [("Positive.", "stop")]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.report is not None
    assert end.report.path.path is AnswerPath.SKIP_FUSION
    assert made["synth"].calls == []


def test_a_margin_needs_a_ranker_with_scores() -> None:
    with pytest.raises(ConfigError, match="no margin"):
        config(ranker={"type": "none"}, skip_fusion={"margin": 0.2})


# ------------------------------------------------------------------- cascade


def cascade(agreement: float = 0.8) -> list[dict[str, Any]]:
    return [{"members": [{"backend": "cheap", "samples": 2}], "accept": {"agreement": agreement}}]


async def test_cascade_stage_answers_when_its_samples_agree() -> None:
    made = members(cheap=("positive",))  # both samples the same: agreement 1.0
    async with await engine(config(cascade=cascade()), made) as served:
        result = await served.complete(ask())
    assert result.choices[0].text == "positive"
    assert [len(made[m].calls) for m in ("a", "b", "c", "synth")] == [0, 0, 0, 0]
    assert made["cheap"].calls[0].n == 2
    assert result.report is not None
    path = result.report.path
    assert (path.path, path.stage, path.fused) == (AnswerPath.CASCADE, 0, False)
    assert [c.member for c in result.report.candidates] == ["stage0:cheap"] * 2


async def test_cascade_escalates_to_the_full_fan_out_when_the_stage_disagrees() -> None:
    made = members(cheap=("positive", "negative"))  # agreement 0.0
    async with await engine(config(cascade=cascade()), made) as served:
        result = await served.complete(ask())
    assert result.choices[0].text == "Fused: positive."
    assert [len(made[m].calls) for m in ("cheap", "a", "b", "c", "synth")] == [1, 1, 1, 1, 1]
    assert result.report is not None
    path = result.report.path
    assert (path.path, path.stage) == (AnswerPath.FUSED, 1)
    assert path.escalated == ("stage 0: agreement 0 < 0.8",)
    # the stage's tokens were spent: they count in usage and in its parts
    assert [p.name for p in result.report.usage][:1] == ["stage0:cheap"]
    assert result.usage.prompt_tokens == 10 * 5


async def test_cascade_escalates_past_a_failing_stage() -> None:
    made = members()
    made["cheap"].error = RuntimeError("down")
    async with await engine(config(cascade=cascade()), made) as served:
        result = await served.complete(ask())
    assert result.report is not None and result.report.path.stage == 1
    assert result.report.path.escalated[0].startswith("stage 0: failed: NoCandidatesError")


# ------------------------------------------------------------------- early stop


async def test_early_stop_cuts_the_slow_member_once_two_agree() -> None:
    made = members("positive", "positive", "negative", c_delay=30.0)
    started = time.perf_counter()
    async with await engine(config(early_stop={"agree": 2, "similarity": 0.9}),
                            made) as served:
        result = await served.complete(ask())
    assert time.perf_counter() - started < 10
    assert made["c"].cancelled == 1
    assert result.report is not None
    assert [(f.member, f.error_type) for f in result.report.failures] == [("c", "EarlyStop")]
    assert result.report.path.early_stop is True
    assert result.report.path.path is AnswerPath.FUSED  # the agreeing two are then fused


async def test_early_stop_waits_while_the_answers_disagree() -> None:
    made = members("positive", "negative", "positive", c_delay=0.2)
    async with await engine(config(early_stop={"agree": 2}), made) as served:
        result = await served.complete(ask())
    assert made["c"].cancelled == 0
    assert result.report is not None and len(result.report.candidates) == 3
    assert result.report.path.early_stop is False


# ------------------------------------------------------------------- hedged


async def test_hedged_answers_with_the_first_valid_candidate_and_cancels_the_rest() -> None:
    made = members(a_delay=30.0, c_delay=30.0)
    made["b"] = ScriptedBackend("b", answers=(Completion("cut off", "length"),))
    made["cheap"] = ScriptedBackend("cheap", texts=("valid and quick",), delay_s=0.1)
    cfg = config(strategy="hedged",
                 members=[{"backend": m} for m in ("a", "b", "cheap", "c")])
    async with await engine(cfg, made) as served:
        started = time.perf_counter()
        result = await served.complete(ask())
    assert time.perf_counter() - started < 10
    assert result.choices[0].text == "valid and quick"
    assert (made["a"].cancelled, made["c"].cancelled) == (1, 1)
    assert made["synth"].calls == []
    assert result.report is not None
    assert result.report.path.path is AnswerPath.HEDGED
    assert sorted(f.error_type for f in result.report.failures) == ["HedgeCut", "HedgeCut"]


async def test_hedged_json_mode_skips_an_answer_that_does_not_parse() -> None:
    made = members()
    made["a"] = ScriptedBackend("a", texts=("not json",))
    made["b"] = ScriptedBackend("b", texts=('{"label": "positive"}',), delay_s=0.1)
    async with await engine(config(strategy="hedged"), made) as served:
        result = await served.complete(ask(response_format={"type": "json_object"}))
    assert result.choices[0].text == '{"label": "positive"}'
    assert result.report is not None and result.report.path.path is AnswerPath.HEDGED
    assert made["synth"].calls == []


async def test_blend_strategy_waits_for_every_member() -> None:
    made = members(c_delay=0.3)
    async with await engine(config(), made) as served:
        result = await served.complete(ask())
    assert made["c"].cancelled == 0
    assert result.report is not None and len(result.report.candidates) == 3


# ------------------------------------------------------------------- vote


async def test_vote_answers_with_the_most_common_normalised_answer() -> None:
    made = members("Negative", " positive ", "Positive.")
    async with await engine(config(strategy="vote"), made) as served:
        result = await served.complete(ask())
        streamed = [e async for e in served.stream(ask())]
    assert result.choices[0].text == " positive "  # the first vote for it, as written
    assert made["synth"].calls == []
    assert result.report is not None and result.report.path.path is AnswerPath.VOTE
    assert result.report.path.reason == "2 of 3 votes for 'positive'"
    assert [e.text for e in streamed if isinstance(e, TextDelta)] == [" positive "]


async def test_vote_early_stop_cuts_once_k_answers_match() -> None:
    made = members("42", "42.0", "41", c_delay=30.0)
    async with await engine(config(strategy="vote", early_stop={"agree": 2}), made) as served:
        result = await served.complete(ask())
    assert made["c"].cancelled == 1 and result.choices[0].text == "42"
    assert result.report is not None and result.report.path.early_stop


def test_the_vote_normaliser_and_its_tie_break() -> None:
    assert normalise("  **Positive**. ") == "positive"
    assert {normalise(t) for t in ("1,000.50", "+1000.5", "1000.500", '"1000.5."')} == {"1000.5"}
    assert normalise("-0.0") == "0" and normalise("3.0") == "3"
    assert normalise("New  York") == "new york"
    tied = [Candidate("a", 0, "no", "stop", 1.0), Candidate("b", 0, "yes", "stop", 0.5),
            Candidate("c", 0, "Yes", "stop", 0.1), Candidate("d", 0, "No.", "stop", 0.2)]
    assert majority(tied).winner.member == "a"  # 2-2: the earliest member's answer
    call = {"id": "1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    calls = [Candidate("a", 0, "", "tool_calls", 1.0, (call,)),
             Candidate("b", 0, "", "tool_calls", 1.0, (call,)),
             Candidate("c", 0, "lookup", "stop", 1.0)]
    assert majority(calls).key == "tool:lookup"


def test_the_largest_agreeing_group() -> None:
    matrix = ((1.0, 0.95, 0.2), (0.95, 1.0, 0.1), (0.2, 0.1, 1.0))
    assert largest_agreeing(matrix, 0.9) == (0, 1)
    assert largest_agreeing(matrix, 0.99) == (0,)


def test_strategies_refuse_policies_that_do_not_apply() -> None:
    with pytest.raises(ConfigError, match="hedged"):
        config(strategy="hedged", skip_fusion={"margin": 1.0})
    with pytest.raises(ConfigError, match="vote"):
        config(strategy="vote", cascade=cascade())
    with pytest.raises(ConfigError, match="margin, agreement"):
        config(skip_fusion={})
    with pytest.raises(ConfigError, match="could never stop early"):
        config(early_stop={"agree": 4})  # 3 members, one sample each
