"""Wire models: what clients send is accepted, what we send parses as the openai SDK's types."""

from __future__ import annotations

import json
import logging

import pytest
from openai.types.chat import ChatCompletion
from openai.types.chat import ChatCompletionChunk as SDKChunk
from pydantic import ValidationError

from ensemble.errors import InvalidParamsError
from ensemble.types import BlendResult, Choice, Usage
from gateway.convert import RequestLimits, to_blend_request, to_chat_completion
from gateway.errors import from_validation_error, param_path
from gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChoiceDelta,
)

LIMITS = RequestLimits(max_n=4, max_candidates=8, samples={"blend": 3})

# What LibreChat's and Open WebUI's OpenAI endpoints send by default (plus a few SDK fields).
CLIENT_DEFAULTS = {
    "model": "blend",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "No markdown."},
        {"role": "user", "content": [{"type": "text", "text": "Hello "},
                                     {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ],
    "user": "user-123",
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "top_p": 0.9,
    "temperature": 0.7,
    "logit_bias": {"50256": -100},
    "max_completion_tokens": 64,
    "seed": 7,
    "stop": ["\n\n", "END"],
    "response_format": {"type": "text"},
    "parallel_tool_calls": False,
    "metadata": {"conversation": "abc"},
    "store": False,
    "stream": False,
    "top_k": 40,
    "some_future_field": {"x": 1},
    "base_url": "http://attacker.example/v1",  # never a route: backends come from config only
}


def test_client_defaults_are_accepted_and_passed_through() -> None:
    request = ChatCompletionRequest.model_validate(CLIENT_DEFAULTS)
    blend = to_blend_request(request, LIMITS)
    p = blend.params
    assert (p.temperature, p.top_p, p.max_tokens, p.seed) == (0.7, 0.9, 64, 7)
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
    assert p.stop == ("\n\n", "END")
    assert p.logit_bias == {"50256": -100}
    assert dict(p.extra) == {"top_k": 40}
    assert [m.role for m in blend.messages] == ["system", "developer", "user", "assistant", "tool"]
    assert blend.messages[2].content == "Hello there"
    assert blend.messages[3].content == ""
    assert blend.n == 1 and blend.return_candidates is False


def test_unknown_fields_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.protocol"):
        ChatCompletionRequest.model_validate_json(
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "frobnicate": 1}'
        )
    assert "frobnicate" in caplog.text


def test_stop_as_string_and_max_tokens_clamped() -> None:
    request = ChatCompletionRequest.model_validate(
        {"model": "x", "messages": [{"role": "user", "content": "x"}], "stop": "###",
         "max_tokens": 5000}
    )
    limits = RequestLimits(max_n=1, max_candidates=1, max_tokens_limit=256)
    params = to_blend_request(request, limits).params
    assert params.stop == ("###",)
    assert params.max_tokens == 256


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"n": 5}, "n"),  # above max_n
        ({"n": 3}, "n"),  # 3 choices x 3 samples = 9 candidates > 8
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"type": "integr"}}}}}]},
         "tools[0].function.parameters"),  # not a JSON Schema
        ({"tools": [{"type": "function", "function": {"name": "f"}},
                    {"type": "function", "function": {"name": "f"}}]}, "tools[1].function.name"),
        ({"tool_choice": "required"}, "tool_choice"),  # no tools
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "tool_choice.function.name"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
         "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": 5}}}}, "response_format.json_schema.schema"),
        ({"messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{x"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"}]},
         "messages[1].tool_calls[0].function.arguments"),
        ({"messages": [{"role": "tool", "content": "1"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ],
)
def test_requests_the_gateway_cannot_serve(change: dict[str, object], param: str) -> None:
    request = ChatCompletionRequest.model_validate({**CLIENT_DEFAULTS, **change})
    with pytest.raises(InvalidParamsError) as info:
        to_blend_request(request, LIMITS)
    assert info.value.param == param


def test_output_controls_reach_the_members_as_sent() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = ChatCompletionRequest.model_validate({
        **CLIENT_DEFAULTS, "tools": [tool], "tool_choice": "required",
        "parallel_tool_calls": False, "logprobs": True, "top_logprobs": 3,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "out", "schema": schema, "strict": True}},
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
    })
    blend = to_blend_request(request, LIMITS)
    params = blend.params
    assert params.tools == (tool,)
    assert (params.tool_choice, params.parallel_tool_calls) == ("required", False)
    assert params.response_format == {
        "type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    assert (params.logprobs, params.top_logprobs) == (True, 3)
    assert blend.messages[1].tool_calls[0]["function"]["name"] == "get_weather"
    assert blend.messages[2].tool_call_id == "c1"


def test_n_within_limits_is_kept() -> None:
    request = ChatCompletionRequest.model_validate({**CLIENT_DEFAULTS, "n": 2})
    assert to_blend_request(request, LIMITS).n == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"model": "m", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
        ('{"model": "m", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
        ('{"model": "m", "messages": [], "n": 1}', "messages"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": 3}', "stop"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": "two"}', "n"),
        ('{"model": "m", "messages": [{"role": "user", "content": "x"}], "blend": {"x": 1}}',
         "blend.x"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "model"),
    ],
)
def test_validation_errors_name_the_param(body: str, param: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate_json(body)
    error = from_validation_error(info.value)
    assert error.status == 400
    assert error.info.param == param
    assert error.info.type == "invalid_request_error"


def test_param_path_skips_union_tags() -> None:
    assert param_path(("messages", 0, "content", "str")) == "messages[0].content"
    assert param_path(("messages", 1, "content", "list[ContentPart]", 0, "type")) == \
        "messages[1].content"
    assert param_path(("stop", "list[str]", 2)) == "stop"
    assert param_path(()) is None


def test_response_parses_as_openai_chat_completion() -> None:
    result = BlendResult("blend", [Choice(0, "hi", "stop"), Choice(1, "yo", "length")],
                         Usage(3, 2))
    wire = to_chat_completion(result, completion_id="chatcmpl-1", created=1, include_report=True)
    parsed = ChatCompletion.model_validate_json(wire.model_dump_json())
    assert parsed.object == "chat.completion"
    assert [c.message.content for c in parsed.choices] == ["hi", "yo"]
    assert parsed.choices[1].finish_reason == "length"
    assert parsed.usage is not None and parsed.usage.total_tokens == 5
    assert "blend" not in wire.model_dump()  # no report on a pass-through result


def test_chunk_omits_unset_role_and_usage() -> None:
    chunk = ChatCompletionChunk(
        id="chatcmpl-1", created=1, model="m",
        choices=[ChatCompletionChunkChoice(index=0, delta=ChoiceDelta(content="x"))],
    )
    data = chunk.model_dump()
    assert data["choices"][0]["delta"] == {"content": "x"}
    assert data["choices"][0]["finish_reason"] is None
    assert "usage" not in data and "blend" not in data
    assert SDKChunk.model_validate_json(chunk.model_dump_json()).choices[0].delta.content == "x"


CALL = {"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                         "top_logprobs": []}]}


def test_tool_calls_logprobs_and_refusal_in_a_chat_completion() -> None:
    from ensemble.types import BlendResult, Choice, Usage
    from gateway.convert import to_chat_completion

    result = BlendResult("m", [Choice(0, "", "tool_calls", (CALL,)),
                               Choice(1, "Hi", "stop", logprobs=LOGPROBS),
                               Choice(2, "", "stop", refusal="I can't.")], Usage(1, 2))
    body = json.loads(to_chat_completion(result, completion_id="x", created=1,
                                         include_report=False).model_dump_json())
    call, text, refusal = body["choices"]
    assert call["message"] == {"role": "assistant", "content": None, "refusal": None,
                               "tool_calls": [CALL]}
    assert call["finish_reason"] == "tool_calls"
    assert text["logprobs"] == LOGPROBS and "tool_calls" not in text["message"]
    assert refusal["message"]["refusal"] == "I can't."


async def test_tool_call_and_logprob_deltas_in_chunks() -> None:
    from ensemble.types import StreamEnd, TextDelta, Usage
    from gateway.streaming import ChunkHeader, to_chunks

    async def events():  # type: ignore[no-untyped-def]
        yield TextDelta("", tool_calls=({**CALL, "index": 0},))
        yield TextDelta("Hi", index=1, logprobs=LOGPROBS)
        yield TextDelta("", finish_reason="tool_calls")
        yield StreamEnd(Usage(1, 2))

    chunks = [json.loads(c.model_dump_json()) async for c in to_chunks(
        events(), ChunkHeader("x", 1, "m"), include_usage=False, include_report=False,
        on_end=lambda end: None)]
    deltas = [(c["choices"][0]["delta"], c["choices"][0]["logprobs"]) for c in chunks]
    assert ({"tool_calls": [{**CALL, "index": 0}]}, None) in deltas
    assert ({"content": "Hi"}, LOGPROBS) in deltas
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_validators_own_words_reach_the_client_without_pydantics_prefix() -> None:
    from gateway.experiments import FeedbackRequest

    with pytest.raises(ValidationError) as info:
        FeedbackRequest.model_validate({"id": "chatcmpl-1", "rating": 3, "thumbs": "up"})
    message = from_validation_error(info.value).info.message
    assert message.startswith("send exactly one of `rating`") and "Value error" not in message
