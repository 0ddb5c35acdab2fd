"""One end-to-end run per adaptive policy on the real SmolLM2 (a llama.cpp server process) and
the real MiniLM consensus similarity. Short answers (``max_tokens`` 12), greedy sampling, so
samples agree; thresholds sit far below the similarity of agreeing answers (about 1.0).

A hanging fake upstream plays the slow member that early stopping and hedging must cut.
"""

from __future__ import annotations

from typing import Any

import pytest

from ensemble.config import parse_config
from ensemble.engine import BlendEngine
from ensemble.types import (
    AnswerPath,
    BlendReport,
    BlendRequest,
    ChatMessage,
    SamplingParams,
    StreamEnd,
    TextDelta,
)
from gateway.testing import FakeUpstreams

pytestmark = pytest.mark.slow

QUESTION = [ChatMessage("user", "What is 2+2? Reply with just the number.")]
PARAMS = SamplingParams(max_tokens=12, temperature=0.0, seed=1)


def engine_config(llama: str, stuck: str, **ensemble: Any) -> Any:
    def backend(url: str) -> dict[str, Any]:
        return {"kind": "openai", "base_url": url, "model": "smollm2", "timeout_s": 300}

    return parse_config({
        "backends": {"llama": backend(llama), "stuck": backend(stuck)},
        "models": [{"type": "ensemble", "id": "blend", "ranker": {"type": "consensus"},
                    "fuser": {"type": "llm", "backend": "llama"}, "member_timeout_s": 300,
                    "deadline_s": 600, **ensemble}],
    })


async def answer(llama: str, up: FakeUpstreams, **ensemble: Any) -> tuple[str, BlendReport]:
    """Streamed, as a chat UI asks: every policy must keep streaming working."""
    async with await BlendEngine.from_config(engine_config(llama, up.hang, **ensemble)) as e:
        events = [event async for event in e.stream(BlendRequest("blend", QUESTION, PARAMS))]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.report is not None
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert text.strip()
    return text, end.report


async def test_skip_fusion_answers_agreeing_samples_without_the_fuser(
    llama_server_url: str, fake_upstreams: FakeUpstreams,
) -> None:
    text, report = await answer(llama_server_url, fake_upstreams,
                                members=[{"backend": "llama", "samples": 3}],
                                skip_fusion={"agreement": 0.5})
    assert report.path.path is AnswerPath.SKIP_FUSION and not report.path.fused
    assert report.path.agreement is not None and report.path.agreement > 0.5
    assert report.fuser == "none (skip_fusion)"
    assert text in {c.text for c in report.candidates}
    assert [p.usage.total_tokens for p in report.usage if p.stage == "fuser"] == [0]


async def test_cascade_first_stage_answers_and_the_full_fan_out_never_runs(
    llama_server_url: str, fake_upstreams: FakeUpstreams,
) -> None:
    _, report = await answer(
        llama_server_url, fake_upstreams,
        cascade=[{"members": [{"backend": "llama", "samples": 2}],
                  "accept": {"agreement": 0.5}}],
        members=[{"backend": "llama", "samples": 2}, {"backend": "stuck"}])
    assert (report.path.path, report.path.stage) == (AnswerPath.CASCADE, 0)
    assert {c.member for c in report.candidates} == {"stage0:llama"}
    assert not report.failures and report.path.escalated == ()
    assert fake_upstreams.requests == []  # the stuck member of the full stage was never asked


async def test_early_stop_cuts_the_hanging_member_once_two_samples_agree(
    llama_server_url: str, fake_upstreams: FakeUpstreams,
) -> None:
    _, report = await answer(
        llama_server_url, fake_upstreams,
        members=[{"backend": "llama"}, {"backend": "llama"}, {"backend": "stuck"}],
        early_stop={"agree": 2, "similarity": 0.5}, fuser={"type": "none"})
    assert report.path.early_stop and report.path.path is AnswerPath.FUSED
    assert [(f.member, f.error_type) for f in report.failures] == [("stuck", "EarlyStop")]


async def test_hedged_answers_with_llama_and_cancels_the_hanging_member(
    llama_server_url: str, fake_upstreams: FakeUpstreams,
) -> None:
    text, report = await answer(llama_server_url, fake_upstreams, strategy="hedged",
                                members=[{"backend": "stuck"}, {"backend": "llama"}])
    assert report.path.path is AnswerPath.HEDGED
    assert text == report.candidates[0].text and report.candidates[0].member == "llama"
    assert [(f.member, f.error_type) for f in report.failures] == [("stuck", "HedgeCut")]
    assert [mode for mode, _ in fake_upstreams.requests] == ["hang"]


async def test_vote_answers_with_the_most_common_answer(
    llama_server_url: str, fake_upstreams: FakeUpstreams,
) -> None:
    text, report = await answer(llama_server_url, fake_upstreams, strategy="vote",
                                members=[{"backend": "llama", "samples": 3}])
    assert report.path.path is AnswerPath.VOTE and not report.path.fused
    assert report.path.reason.startswith(("3 of 3", "2 of 3"))
    assert text in {c.text for c in report.candidates}
