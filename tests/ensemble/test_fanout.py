"""Fan-out: concurrency, per-member timeouts, the overall deadline, failures, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest

from ensemble.backends.base import Backend
from ensemble.errors import BackendStatusError, DeadlineExceeded, NoCandidatesError
from ensemble.fanout import FanoutMember, fan_out
from ensemble.types import ChatMessage, SamplingParams, Usage
from gateway.testing import FakeUpstreams
from tests.ensemble.scripted import ScriptedBackend

MESSAGES = [ChatMessage("user", "Say something.")]


def member(backend: Backend, samples: int = 1, timeout_s: float = 5.0) -> FanoutMember:
    return FanoutMember(backend.name, backend, samples, SamplingParams(temperature=0.5), timeout_s)


async def test_one_call_per_member_with_n_and_candidates_in_member_order() -> None:
    a = ScriptedBackend("a", texts=("a0", "a1", "a2"), delay_s=0.05)
    b = ScriptedBackend("b", texts=("b0",))
    result = await fan_out(MESSAGES, [member(a, samples=3), member(b)],
                           min_candidates=1, deadline_s=5)
    assert [(c.member, c.sample, c.text) for c in result.candidates] == [
        ("a", 0, "a0"), ("a", 1, "a1"), ("a", 2, "a2"), ("b", 0, "b0")]
    assert [call.n for call in a.calls] == [3] and [call.n for call in b.calls] == [1]
    assert a.calls[0].params.temperature == 0.5
    assert all(c.latency_s >= 0.05 for c in result.candidates[:3])
    assert result.candidates[3].latency_s < 0.05
    assert result.usage == Usage(20, 8)  # both calls' usage, counted once per call
    assert result.failures == ()


async def test_members_run_concurrently() -> None:
    slow = [ScriptedBackend(f"s{i}", delay_s=0.3) for i in range(4)]
    started = time.perf_counter()
    result = await fan_out(MESSAGES, [member(b) for b in slow], min_candidates=4, deadline_s=5)
    assert len(result.candidates) == 4
    assert time.perf_counter() - started < 0.9


async def test_failures_are_recorded_not_raised() -> None:
    good = ScriptedBackend("good", texts=("fine",))
    broken = ScriptedBackend("broken", error=BackendStatusError("upstream 500", status=500))
    slow = ScriptedBackend("slow", delay_s=10)
    empty = ScriptedBackend("empty", texts=("  ",))
    started = time.perf_counter()
    result = await fan_out(
        MESSAGES, [member(good), member(broken), member(slow, timeout_s=0.2), member(empty)],
        min_candidates=1, deadline_s=5)
    assert time.perf_counter() - started < 1.0
    assert [c.member for c in result.candidates] == ["good"]
    failures = {f.member: f for f in result.failures}
    assert failures["broken"].error_type == "BackendStatusError"
    assert failures["broken"].message == "upstream 500"
    assert failures["slow"].error_type == "BackendTimeout"
    assert "member timeout" in failures["slow"].message
    assert 0.2 <= failures["slow"].latency_s < 1.0
    assert slow.cancelled == 1
    assert failures["empty"].error_type == "BackendProtocolError"


async def test_deadline_answers_from_those_in_time_and_cuts_stragglers() -> None:
    fast = ScriptedBackend("fast")
    straggler = ScriptedBackend("straggler", delay_s=10)
    started = time.perf_counter()
    result = await fan_out(MESSAGES, [member(fast), member(straggler, timeout_s=30)],
                           min_candidates=1, deadline_s=0.3)
    assert 0.3 <= time.perf_counter() - started < 1.0
    assert [c.member for c in result.candidates] == ["fast"]
    (failure,) = result.failures
    assert (failure.member, failure.error_type) == ("straggler", "BackendTimeout")
    assert "deadline" in failure.message
    assert straggler.cancelled == 1


async def test_too_few_candidates_raises_no_candidates_with_every_failure() -> None:
    ok = ScriptedBackend("ok")
    bad = ScriptedBackend("bad", error=BackendStatusError("boom", status=503))
    with pytest.raises(NoCandidatesError) as info:
        await fan_out(MESSAGES, [member(ok), member(bad)], min_candidates=2, deadline_s=5)
    assert not isinstance(info.value, DeadlineExceeded)
    assert [(f.member, f.error_type) for f in info.value.failures] == [
        ("bad", "BackendStatusError")]
    assert "1 of the required 2" in str(info.value)


async def test_too_few_candidates_because_of_the_deadline_raises_deadline_exceeded() -> None:
    slow = ScriptedBackend("slow", delay_s=10)
    with pytest.raises(DeadlineExceeded) as info:
        await fan_out(MESSAGES, [member(slow, timeout_s=30)], min_candidates=1, deadline_s=0.2)
    assert [f.error_type for f in info.value.failures] == ["BackendTimeout"]


async def test_cancelling_the_caller_cancels_every_upstream_call() -> None:
    backends = [ScriptedBackend(f"h{i}", delay_s=10) for i in range(3)]
    task = asyncio.create_task(
        fan_out(MESSAGES, [member(b, timeout_s=30) for b in backends],
                min_candidates=1, deadline_s=30))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [b.cancelled for b in backends] == [1, 1, 1]


async def test_survivors_answer_over_real_http_when_upstreams_fail(
    fake_upstreams: FakeUpstreams,
) -> None:
    from ensemble.backends.openai_compat import OpenAICompatBackend
    from ensemble.config import OpenAIBackendConfig

    modes = ["ok", "hang", "error500", "refused", "malformed", "drop_stream"]
    backends = [
        OpenAICompatBackend(mode, OpenAIBackendConfig(base_url=fake_upstreams.url(mode),
                                                      model="fake", timeout_s=30))
        for mode in modes
    ]
    try:
        started = time.perf_counter()
        result = await fan_out(
            MESSAGES, [member(b, samples=2, timeout_s=0.5) for b in backends],
            min_candidates=2, deadline_s=5)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.2)  # let the fake server notice the hang-up
    finally:
        for backend in backends:
            await backend.aclose()
    assert elapsed < 1.5
    assert [(c.member, c.sample) for c in result.candidates] == [("ok", 0), ("ok", 1)]
    assert result.candidates[0].text == "The quick brown fox jumps over the lazy dog."
    failed = {f.member: f.error_type for f in result.failures}
    assert failed == {
        "hang": "BackendTimeout",
        "error500": "BackendStatusError",
        "refused": "BackendConnectError",
        "malformed": "BackendProtocolError",
        "drop_stream": "BackendProtocolError",
    }
    assert fake_upstreams.disconnects == 1  # the hung request was really abandoned
    ok_bodies = [body for mode, body in fake_upstreams.requests if mode == "ok"]
    assert [body["n"] for body in ok_bodies] == [2]


# ------------------------------------------------------------------ quorum_wait_s


async def test_quorum_wait_cuts_the_late_members_and_reports_them() -> None:
    fast = [ScriptedBackend(f"f{i}", texts=(f"fast {i}",)) for i in range(2)]
    stuck = ScriptedBackend("stuck", delay_s=30)
    started = time.perf_counter()
    result = await fan_out(MESSAGES, [member(fast[0]), member(stuck, timeout_s=60),
                                      member(fast[1])],
                           min_candidates=2, deadline_s=60, quorum_wait_s=0.2)
    took = time.perf_counter() - started
    assert 0.2 <= took < 5  # not the stuck member's 30 s, nor its 60 s timeout
    assert [c.text for c in result.candidates] == ["fast 0", "fast 1"]
    [cut] = result.failures
    assert (cut.member, cut.error_type) == ("stuck", "QuorumCut")
    assert "quorum_wait_s" in cut.message and cut.latency_s >= 0.2
    assert stuck.cancelled == 1  # the upstream call is cancelled, not left running
    assert result.usage == Usage(20, 8)  # the cut member's call reported nothing
    assert [label for label, _ in result.member_usage] == ["f0", "f1"]


async def test_members_arriving_within_quorum_wait_are_kept() -> None:
    first = ScriptedBackend("first", texts=("one",))
    second = ScriptedBackend("second", texts=("two",), delay_s=0.1)
    result = await fan_out(MESSAGES, [member(first), member(second)], min_candidates=1,
                           deadline_s=30, quorum_wait_s=5)
    assert [c.text for c in result.candidates] == ["one", "two"] and result.failures == ()
    assert result.elapsed_s < 4  # ended when the last member answered, not after 5 s


async def test_quorum_counts_candidates_and_is_not_reached_by_failures() -> None:
    broken = ScriptedBackend("broken", error=BackendStatusError("upstream 500", status=500))
    two = ScriptedBackend("two", texts=("x", "y"), delay_s=0.2)
    late = ScriptedBackend("late", delay_s=30)
    result = await fan_out(MESSAGES, [member(broken), member(two, samples=2), member(late)],
                           min_candidates=2, deadline_s=60, quorum_wait_s=0)
    assert [c.text for c in result.candidates] == ["x", "y"]  # one member, two samples
    assert [(f.member, f.error_type) for f in result.failures] == [
        ("broken", "BackendStatusError"), ("late", "QuorumCut")]


async def test_without_quorum_wait_every_member_is_awaited() -> None:
    fast = ScriptedBackend("fast")
    slow = ScriptedBackend("slow", delay_s=0.3)
    result = await fan_out(MESSAGES, [member(fast), member(slow)], min_candidates=1,
                           deadline_s=30)
    assert len(result.candidates) == 2 and result.elapsed_s >= 0.3
