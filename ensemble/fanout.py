"""Fan-out: ask every member of an ensemble at once and keep whatever answers in time.

Each member is ONE ``backend.complete(messages, params, n=samples)`` call, bounded by its own
timeout and by the ensemble's overall deadline, whichever comes first. All calls run in one
``asyncio.TaskGroup``, so cancelling the caller cancels every upstream call. A member that
fails or times out becomes a :class:`MemberFailure` on the result; it is never raised. Only
when fewer than ``min_candidates`` answers arrived does :func:`fan_out` raise:
:class:`DeadlineExceeded` if the overall deadline cut members off, :class:`MembersTimedOut`
if every member timed out, :class:`MembersRejected` if every member rejected the request
with a 4xx, else :class:`NoCandidatesError`.

``quorum_wait_s`` (optional): once ``min_candidates`` answers are in, the rest get at most
that many more seconds; members still running then are cancelled (their upstream calls too)
and reported as failures of type ``QuorumCut``, so the ensemble ranks what arrived instead of
waiting for its slowest member up to that member's timeout. ``None`` waits for every member.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from ensemble.backends.base import Backend
from ensemble.errors import (
    BackendStatusError,
    BackendTimeout,
    BlendError,
    DeadlineExceeded,
    MembersRejected,
    MembersTimedOut,
    NoCandidatesError,
    OverloadedError,
)
from ensemble.types import (
    Candidate,
    ChatMessage,
    Completion,
    MemberFailure,
    SamplingParams,
    Usage,
)


@dataclass(frozen=True)
class FanoutMember:
    """One member call: ``samples`` answers from ``backend`` with these sampling params."""

    label: str  # Candidate.member / MemberFailure.member
    backend: Backend
    samples: int
    params: SamplingParams
    timeout_s: float


QUORUM_CUT = "QuorumCut"  # MemberFailure.error_type of a member cut by quorum_wait_s


@dataclass(frozen=True)
class FanoutResult:
    candidates: tuple[Candidate, ...]  # member order, then sample order
    failures: tuple[MemberFailure, ...]
    usage: Usage  # summed over the members that answered
    elapsed_s: float
    # (member label, usage its upstream call reported), member order; members without usage
    # (failed, cut) are left out
    member_usage: tuple[tuple[str, Usage], ...] = ()


@dataclass(frozen=True)
class _Outcome:
    candidates: tuple[Candidate, ...] = ()
    failure: MemberFailure | None = None
    usage: Usage = field(default_factory=Usage)
    cut_by_deadline: bool = False
    error: BaseException | None = None  # why the member failed (None: answered, or empty)


async def fan_out(
    messages: Sequence[ChatMessage],
    members: Sequence[FanoutMember],
    *,
    min_candidates: int,
    deadline_s: float,
    quorum_wait_s: float | None = None,
) -> FanoutResult:
    """Run ``members`` concurrently; return their candidates and failures (see module doc)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline_at = started + deadline_s
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_call(m, messages, deadline_at)) for m in members]
        if quorum_wait_s is not None:
            await _cut_after_quorum(tasks, min_candidates, quorum_wait_s)
    outcomes = [
        _cut(member, quorum_wait_s or 0.0, loop.time() - started) if task.cancelled()
        else task.result()
        for member, task in zip(members, tasks, strict=False)
    ]
    candidates = tuple(c for o in outcomes for c in o.candidates)
    failures = tuple(o.failure for o in outcomes if o.failure is not None)
    if len(candidates) < min_candidates:
        message = (f"{len(candidates)} of the required {min_candidates} candidates "
                   f"arrived from {len(members)} members")
        if any(o.cut_by_deadline for o in outcomes):
            raise DeadlineExceeded(f"deadline of {deadline_s:g}s passed: {message}", failures)
        raise _shortfall(message, outcomes, failures)
    usage = sum((o.usage for o in outcomes), Usage())
    member_usage = tuple((m.label, o.usage) for m, o in zip(members, outcomes, strict=False)
                         if o.usage != Usage())
    return FanoutResult(candidates, failures, usage, loop.time() - started, member_usage)


async def _cut_after_quorum(
    tasks: Sequence[asyncio.Task[_Outcome]], min_candidates: int, wait_s: float
) -> None:
    """Wait until ``min_candidates`` candidates are in, then at most ``wait_s`` for the
    rest; cancel what is still running (the TaskGroup then waits for the cancellations)."""
    pending: set[asyncio.Task[_Outcome]] = set(tasks)
    arrived = 0
    while pending and arrived < min_candidates:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        arrived += sum(len(task.result().candidates) for task in done)
    if pending:
        _, late = await asyncio.wait(pending, timeout=wait_s)
        for task in late:
            task.cancel()


def _cut(member: FanoutMember, wait_s: float, latency: float) -> _Outcome:
    failure = MemberFailure(member.label, QUORUM_CUT,
                            f"cut: still running {wait_s:g}s after the quorum of candidates "
                            f"arrived (quorum_wait_s)", latency)
    return _Outcome(failure=failure)


async def _call(
    member: FanoutMember, messages: Sequence[ChatMessage], deadline_at: float
) -> _Outcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    member_at = started + member.timeout_s
    limit_at = min(member_at, deadline_at)

    def failed(error: BaseException, *, cut: bool = False) -> _Outcome:
        failure = MemberFailure(member.label, type(error).__name__, str(error) or repr(error),
                                loop.time() - started)
        return _Outcome(failure=failure, cut_by_deadline=cut, error=error)

    try:
        async with asyncio.timeout_at(limit_at):
            completions = await member.backend.complete(messages, member.params, member.samples)
    except TimeoutError:
        if deadline_at <= member_at:
            return failed(BackendTimeout("cut off by the ensemble deadline"), cut=True)
        return failed(BackendTimeout(f"no answer within the member timeout "
                                     f"({member.timeout_s:g}s)"))
    except Exception as exc:  # noqa: BLE001 - a failing member degrades the ensemble only
        return failed(exc)
    return _collect(member, completions, loop.time() - started)


def _shortfall(
    message: str, outcomes: Sequence[_Outcome], failures: tuple[MemberFailure, ...]
) -> BlendError:
    """Say truthfully why too few answers came: every member's queue full is 503 (retry
    later); every member timing out is a timeout (504);
    every member rejecting the request (4xx) is the request's fault, so its status is relayed
    (theirs when they agree, else 400) and the client does not retry; anything else is 502."""
    errors = [o.error for o in outcomes]
    if all(isinstance(e, OverloadedError) for e in errors):
        return OverloadedError(f"every member is overloaded: {message}")
    if all(isinstance(e, BackendTimeout) for e in errors):
        return MembersTimedOut(f"every member timed out: {message}", failures)
    rejections = [e for e in errors if isinstance(e, BackendStatusError) and e.rejected]
    if len(rejections) == len(errors):
        statuses = {e.status for e in rejections}
        status = statuses.pop() if len(statuses) == 1 else 400
        return MembersRejected(f"every member rejected the request: {message}", failures,
                               status=status)
    return NoCandidatesError(message, failures)


def _collect(member: FanoutMember, completions: Sequence[Completion], latency: float) -> _Outcome:
    answered = [
        Candidate(member.label, index, c.text, c.finish_reason, latency, c.tool_calls,
                  c.logprobs)
        for index, c in enumerate(completions[: member.samples])
        if c.text.strip() or c.tool_calls
    ]
    usage = sum((c.usage for c in completions if c.usage is not None), Usage())
    if answered:
        return _Outcome(candidates=tuple(answered), usage=usage)
    failure = MemberFailure(member.label, "BackendProtocolError",
                            f"{len(completions)} completions, none with text or a tool call", latency)
    return _Outcome(failure=failure, usage=usage)
