"""How an ensemble answers when the request asks for tools or structured output.

Members receive the request's tools and ``response_format``; what comes back is screened
(``screen``) before ranking:

* a tool call must name a tool of the request (the named one, for a named ``tool_choice``)
  with JSON arguments that validate against its schema; ``tool_choice: "none"`` admits no
  calls, ``"required"`` or a named function admits nothing but calls;
* with ``response_format`` json_object / json_schema, a text answer must parse (and validate).

A candidate that fails is dropped and reported as a failure, like a member that errored.

Then the ensemble decides as a whole (``tool_winner``): all screened candidates are ranked
together (a call is ranked as its JSON, ``{"name", "arguments"}``). With the ``best`` rule a
tool call is returned when the ranked-best candidate is one; with ``majority`` when at least
``majority`` of the candidates are calls (the best-ranked call is returned). Otherwise the text
candidates alone are fused, as without tools: the fuser never sees a call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ensemble.config import ToolPolicyConfig
from ensemble.structured import output_error, tool_call_error
from ensemble.types import Candidate, MemberFailure, Ranking, SamplingParams

INVALID_OUTPUT = "InvalidOutput"  # MemberFailure.error_type of a screened-out candidate


@dataclass(frozen=True)
class Screened:
    candidates: tuple[Candidate, ...]
    failures: tuple[MemberFailure, ...]


def screen(candidates: Sequence[Candidate], params: SamplingParams) -> Screened:
    """Split candidates into those that answer the request's contract and failures (why not)."""
    kept: list[Candidate] = []
    failures: list[MemberFailure] = []
    for candidate in candidates:
        reason = candidate_error(candidate, params)
        if reason is None:
            kept.append(candidate)
        else:
            failures.append(MemberFailure(
                f"{candidate.member}[{candidate.sample}]", INVALID_OUTPUT, reason,
                candidate.latency_s))
    return Screened(tuple(kept), tuple(failures))


def candidate_error(candidate: Candidate, params: SamplingParams) -> str | None:
    choice = params.tool_choice
    if candidate.tool_calls:
        if not params.tools or choice == "none":
            return "called a tool, but the request allows no tool call"
        return tool_call_error(candidate.tool_calls, params.tools, choice)
    if params.tools and (choice == "required" or isinstance(choice, dict)):
        return "answered in text, but tool_choice requires a tool call"
    reason = output_error(candidate.text, params.response_format)
    if reason is None or params.response_format is None:
        return reason
    return f"invalid {params.response_format['type']}: {reason}"


def rank_text(candidate: Candidate) -> str:
    """What the ranker reads for a candidate: its text, or its calls as JSON."""
    if not candidate.tool_calls:
        return candidate.text
    calls = [{"name": c["function"]["name"], "arguments": c["function"].get("arguments", "")}
             for c in candidate.tool_calls]
    return json.dumps(calls if len(calls) > 1 else calls[0])


def tool_winner(
    candidates: Sequence[Candidate], ranking: Ranking | None, policy: ToolPolicyConfig
) -> Candidate | None:
    """The tool-call candidate the ensemble answers with, or None to fuse the text ones."""
    order = ranking.order() if ranking is not None else list(range(len(candidates)))
    calls = [candidates[i] for i in order if candidates[i].tool_calls]
    if not calls:
        return None
    if policy.decide == "best":
        return calls[0] if candidates[order[0]].tool_calls else None
    return calls[0] if len(calls) >= policy.majority * len(candidates) else None


def text_order(candidates: Sequence[Candidate], ranking: Ranking | None) -> list[Candidate]:
    """The text candidates, best first (members' order when unranked)."""
    order = ranking.order() if ranking is not None else list(range(len(candidates)))
    return [candidates[i] for i in order if not candidates[i].tool_calls]


def answer_error(text: str, params: SamplingParams) -> str | None:
    """Why a fused answer breaks ``response_format``, or None."""
    return output_error(text, params.response_format)


def wants_json(params: SamplingParams) -> bool:
    fmt = params.response_format
    return bool(fmt) and fmt is not None and fmt.get("type") != "text"
