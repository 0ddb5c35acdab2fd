"""Ensembles with tools and structured output: screening, the tool-call decision, JSON fusion."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ensemble.errors import NoCandidatesError
from ensemble.output_policy import INVALID_OUTPUT
from ensemble.types import ChatMessage, Completion, StreamEnd, TextDelta
from tests.ensemble.scripted import ScriptedBackend
from tests.ensemble.test_engine import (
    LengthRanker,
    backends,
    config,
    engine_with,
    request,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}


def call(arguments: str, name: str = "get_weather") -> Completion:
    tool_call = {"id": f"call-{len(arguments)}", "type": "function",
                 "function": {"name": name, "arguments": arguments}}
    return Completion("", "tool_calls", tool_calls=(tool_call,))


def text(value: str) -> Completion:
    return Completion(value, "stop")


def members(a: list[Completion], b: Completion, c: Completion,
            synth: str = "Fused text.") -> dict[str, ScriptedBackend]:
    return backends(a=ScriptedBackend("a", answers=a), b=ScriptedBackend("b", answers=[b]),
                    c=ScriptedBackend("c", answers=[c]),
                    synth=ScriptedBackend("synth", texts=(synth,)))


async def run(made: dict[str, ScriptedBackend], stream: bool = False, tools_policy: Any = None,
              **params: Any) -> Any:
    cfg = config(tools=tools_policy) if tools_policy else config()
    async with await engine_with(cfg, made, LengthRanker()) as engine:
        req = request(**params)
        if not stream:
            return await engine.complete(req)
        return [event async for event in engine.stream(req)]


# The ranker reads a call as its JSON ({"name", "arguments"}): LengthRanker ranks it first.
LONG_CALL = call('{"city": "Paris, France, Europe"}')


async def test_best_ranked_tool_call_is_the_answer() -> None:
    made = members([LONG_CALL, text("Short.")], text("Also short."), text("Tiny."))
    result = await run(made, tools=(WEATHER,))
    (choice,) = result.choices
    assert choice.tool_calls == LONG_CALL.tool_calls and choice.finish_reason == "tool_calls"
    assert choice.text == "" and result.report.fuser == "none (tool call)"
    assert made["synth"].calls == []  # nothing to fuse
    assert all(m.calls[0].params.tools == (WEATHER,) for m in (made["a"], made["b"]))


async def test_text_is_fused_without_the_calls_when_a_text_ranks_best() -> None:
    made = members([call('{"city": "Oslo"}'), text("A much longer text answer here, longer than any call rendered as JSON.")],
                   text("Short text."), text("Tiny."))
    result = await run(made, tools=(WEATHER,))
    assert result.choices[0].text == "Fused text." and not result.choices[0].tool_calls
    (fuse,) = made["synth"].calls
    assert fuse.params.tools == () and fuse.params.tool_choice is None
    prompt = fuse.messages[0].content
    assert "A much longer text answer here, longer than any call rendered as JSON." in prompt and "get_weather" not in prompt


async def test_majority_rule_returns_a_call_when_enough_members_call() -> None:
    calls = [call('{"city": "Oslo"}'), call('{"city": "Rome"}')]
    made = members(calls, call('{"city": "Bern"}'), text("The longest answer of them all, in text, longer than any call as JSON."))
    best = await run(made, tools=(WEATHER,))
    assert best.choices[0].text == "Fused text."  # "best": the best-ranked is the text
    made = members(calls, call('{"city": "Bern"}'), text("The longest answer of them all, in text, longer than any call as JSON."))
    majority = await run(made, tools=(WEATHER,), tools_policy={"decide": "majority",
                                                                "majority": 0.75})
    assert majority.choices[0].tool_calls == calls[0].tool_calls  # 3 of 4 call; best call wins


async def test_invalid_tool_calls_are_dropped_and_reported() -> None:
    made = members([call('{"city": 5, "padding": "makes this the longest"}'), call("{not json")],
                   call('{"city": "x"}', name="launch_rockets"), text("Plain text answer."))
    result = await run(made, tools=(WEATHER,))
    assert result.choices[0].text == "Fused text."
    reasons = {f.member: f.message for f in result.report.failures}
    assert all(f.error_type == INVALID_OUTPUT for f in result.report.failures)
    assert "city" in reasons["a[0]"] and "not JSON" in reasons["a[1]"]
    assert "unknown tool 'launch_rockets'" in reasons["b[0]"]
    assert [c.member for c in result.report.candidates] == ["c"]


async def test_required_tool_choice_drops_text_answers() -> None:
    made = members([text("A long text answer that would otherwise win."), call('{"city": "Oslo"}')],
                   text("Text."), text("Text."))
    result = await run(made, tools=(WEATHER,), tool_choice="required")
    assert result.choices[0].tool_calls and result.choices[0].finish_reason == "tool_calls"
    assert len(result.report.failures) == 3


async def test_none_tool_choice_drops_calls() -> None:
    made = members([LONG_CALL, text("Text one.")], text("Text two."), text("Text three."))
    result = await run(made, tools=(WEATHER,), tool_choice="none")
    assert result.choices[0].text == "Fused text."
    assert [f.member for f in result.report.failures] == ["a[0]"]


async def test_tool_history_reaches_every_member() -> None:
    made = members([text("It is sunny in Oslo.")], text("Sunny."), text("Sunny, 21 C."))
    history = [ChatMessage("user", "Weather in Oslo?"),
               ChatMessage("assistant", "", tool_calls=LONG_CALL.tool_calls),
               ChatMessage("tool", '{"sky": "sunny"}', tool_call_id="call-31")]
    async with await engine_with(config(), made, LengthRanker()) as engine:
        req = request(tools=(WEATHER,))
        await engine.complete(type(req)(req.model, history, req.params))
    for name in ("a", "b", "c"):
        sent = made[name].calls[0].messages
        assert sent[1].tool_calls == LONG_CALL.tool_calls and sent[2].tool_call_id == "call-31"


async def test_streamed_tool_call_is_one_indexed_delta() -> None:
    made = members([LONG_CALL], text("Short."), text("Tiny."))
    events = await run(made, stream=True, tools=(WEATHER,))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert isinstance(events[-1], StreamEnd)
    (delta,) = deltas
    assert delta.finish_reason == "tool_calls"
    assert delta.tool_calls == ({**LONG_CALL.tool_calls[0], "index": 0},)


async def test_structured_output_drops_invalid_candidates_and_fuses_with_the_format() -> None:
    fused = '{"city": "Paris"}'
    made = members([text("not json at all, and long"), text('{"city": 7}')],
                   text('{"city": "Rome"}'), text('["a list"]'), synth=fused)
    result = await run(made, response_format=JSON_SCHEMA)
    assert result.choices[0].text == fused and result.report.fuser == "llm"
    assert len(result.report.failures) == 3
    assert made["synth"].calls[0].params.response_format == JSON_SCHEMA
    assert made["b"].calls[0].params.response_format == JSON_SCHEMA


async def test_invalid_fused_json_falls_back_to_the_best_valid_candidate() -> None:
    made = members([text('{"city": "Rome, the longest"}')], text('{"city": "Oslo"}'),
                   text("nope"), synth="Sorry, no JSON.")
    result = await run(made, response_format=JSON_SCHEMA)
    assert json.loads(result.choices[0].text) == {"city": "Rome, the longest"}
    assert result.report.fuser == "llm (invalid json_schema; best candidate)"
    events = await run(members([text('{"city": "Rome, the longest"}')], text('{"city": "Oslo"}'),
                               text("nope"), synth="Sorry."), stream=True,
                       response_format=JSON_SCHEMA)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == \
        '{"city": "Rome, the longest"}'


async def test_json_object_mode_without_a_schema() -> None:
    made = members([text('{"any": "object"}')], text("[1, 2]"), text("plain"),
                   synth='{"fused": true}')
    result = await run(made, response_format={"type": "json_object"})
    assert json.loads(result.choices[0].text) == {"fused": True}
    assert len(result.report.failures) == 2


async def test_no_candidate_satisfying_the_schema_is_a_clear_error() -> None:
    made = members([text("no")], text("[]"), text('{"city": 1}'))
    with pytest.raises(NoCandidatesError) as info:
        await run(made, response_format=JSON_SCHEMA)
    assert "response_format" in str(info.value) and "city" in str(info.value)
