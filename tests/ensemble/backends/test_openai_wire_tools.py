"""Tools, structured output, logprobs and refusals on the OpenAI wire (no model needed)."""

from __future__ import annotations

import json

import pytest

from ensemble.backends.forced_tools import as_tool_calls, forced_call_schema
from ensemble.backends.openai_wire import (
    StreamAssembler,
    chat_request_body,
    fit_tools,
    merge_tool_call_deltas,
    parse_completion,
)
from ensemble.errors import BackendStatusError
from ensemble.types import ChatMessage, SamplingParams, TextDelta

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = {"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def test_request_body_forwards_every_output_control() -> None:
    params = SamplingParams(
        tools=(TOOL,), tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False, logprobs=True, top_logprobs=2, seed=7, stop=("x",),
        logit_bias={"42": -100.0}, response_format={"type": "json_object"},
        extra={"min_p": 0.1})
    messages = [ChatMessage("user", "weather?"),
                ChatMessage("assistant", "", tool_calls=(CALL,)),
                ChatMessage("tool", "sunny", tool_call_id="c1")]
    body = chat_request_body(messages, params, 1, model="m")
    assert body["tools"] == [TOOL]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["parallel_tool_calls"], body["logprobs"], body["top_logprobs"]) == (False, True, 2)
    assert (body["seed"], body["stop"], body["logit_bias"]) == (7, ["x"], {"42": -100.0})
    assert body["response_format"] == {"type": "json_object"} and body["min_p"] == 0.1
    assert body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    json.dumps(body)  # plain JSON all the way down


def test_parse_completion_keeps_tool_calls_logprobs_and_refusal() -> None:
    logprobs = {"content": [{"token": "x", "logprob": -0.1, "bytes": [120], "top_logprobs": []}]}
    data = {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [CALL]},
         "finish_reason": "tool_calls", "logprobs": logprobs},
        {"index": 1, "message": {"role": "assistant", "content": None, "refusal": "no"},
         "finish_reason": "stop"}]}
    first, second = parse_completion(data, backend="b")
    assert first.tool_calls == (CALL,) and first.text == "" and first.logprobs == logprobs
    assert second.refusal == "no"


def test_stream_assembler_passes_tool_call_pieces() -> None:
    assembler = StreamAssembler(backend="b", n=1)
    pieces = [
        {"index": 0, "id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Oslo"}'}},
    ]
    deltas = [d for p in pieces
              for d in assembler.feed({"choices": [{"index": 0, "delta": {"tool_calls": [p]}}]})]
    list(assembler.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
    assert [d.tool_calls for d in deltas] == [(p,) for p in pieces]
    assert merge_tool_call_deltas([t for d in deltas for t in d.tool_calls]) == (CALL,)
    assert assembler.finish()[0].finish_reason == "tool_calls"


def test_fit_tools_drops_oversized_tools_only_when_text_is_allowed() -> None:
    params = SamplingParams(tools=(TOOL,) * 3)
    assert fit_tools(params, None, backend="b") is params
    assert fit_tools(params, 10_000, backend="b") is params
    assert fit_tools(params, 100, backend="b").tools == ()
    required = SamplingParams(tools=(TOOL,) * 3, tool_choice="required")
    with pytest.raises(BackendStatusError) as info:
        fit_tools(required, 100, backend="b")
    assert info.value.status == 400 and "max_tools_chars" in str(info.value)


def test_forced_call_schema_follows_tool_choice() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    assert forced_call_schema(SamplingParams(tools=(TOOL,), tool_choice="auto")) is None
    named = forced_call_schema(SamplingParams(tools=(TOOL, other), tool_choice={
        "type": "function", "function": {"name": "get_weather"}}))
    assert named is not None and named["properties"]["name"] == {"const": "get_weather"}
    required = forced_call_schema(SamplingParams(tools=(TOOL, other), tool_choice="required"))
    assert required is not None and len(required["anyOf"]) == 2


async def test_as_tool_calls_turns_constrained_json_into_a_call() -> None:
    async def deltas():  # type: ignore[no-untyped-def]
        yield TextDelta('{"name": "get_weather", ')
        yield TextDelta('"arguments": {"city": "Oslo"}}')
        yield TextDelta("", finish_reason="stop")

    out = [d async for d in as_tool_calls(deltas())]
    assert len(out) == 1 and out[0].finish_reason == "tool_calls" and out[0].text == ""
    (call,) = out[0].tool_calls
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert call["index"] == 0 and call["id"].startswith("call_")


async def test_as_tool_calls_keeps_cut_json_as_text() -> None:
    async def deltas():  # type: ignore[no-untyped-def]
        yield TextDelta('{"name": "get_wea')
        yield TextDelta("", finish_reason="length")

    (out,) = [d async for d in as_tool_calls(deltas())]
    assert (out.text, out.finish_reason, out.tool_calls) == ('{"name": "get_wea', "length", ())
