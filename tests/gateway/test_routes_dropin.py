"""GET /v1/models/{id}, POST /v1/completions and POST /v1/responses with the openai client,
and the request bodies in /openapi.json (scripted engine, no model)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.gateway.conftest import ENSEMBLE, SINGLE, ScriptedEngine


def sdk(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def http(client: httpx.AsyncClient) -> httpx.AsyncClient:  # conftest's in-process client
    return client


def test_models_retrieve(server_url: str) -> None:
    model = sdk(server_url).models.retrieve(ENSEMBLE)
    assert model.id == ENSEMBLE and model.object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        sdk(server_url).models.retrieve("nope")
    assert info.value.code == "model_not_found"


def test_legacy_completion(server_url: str, engine: ScriptedEngine) -> None:
    completion = sdk(server_url).completions.create(
        model=SINGLE, prompt="Once upon a time", max_tokens=8, n=2)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert [c.text for c in completion.choices] == ["blended answer number 0",
                                                     "blended answer number 1"]
    assert completion.usage is not None and completion.usage.completion_tokens == 8
    (sent,) = engine.requests
    assert [(m.role, m.content) for m in sent.messages] == [("user", "Once upon a time")]
    assert sent.params.max_tokens == 8


def test_legacy_completion_streamed(server_url: str) -> None:
    chunks = list(sdk(server_url).completions.create(
        model=ENSEMBLE, prompt="Hi", stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "blended answer number 0"
    assert chunks[-1].usage is not None and chunks[-1].choices == []


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ({"prompt": "a", "echo": True}, "echo"),
])
async def test_legacy_completion_bad_input(http: httpx.AsyncClient, body: dict[str, object],
                                           param: str) -> None:
    response = await http.post("/v1/completions", json={"model": SINGLE, **body})
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_responses_create(server_url: str, engine: ScriptedEngine) -> None:
    response = sdk(server_url).responses.create(
        model=ENSEMBLE, input="Tell me a joke.", instructions="Be brief.", max_output_tokens=20)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "blended answer number 0"
    assert response.usage is not None and response.usage.output_tokens == 4
    (sent,) = engine.requests
    assert [(m.role, m.content) for m in sent.messages] == [
        ("system", "Be brief."), ("user", "Tell me a joke.")]
    assert sent.params.max_tokens == 20


def test_responses_message_list_with_function_call_history(
    server_url: str, engine: ScriptedEngine
) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}
    sdk(server_url).responses.create(model=SINGLE, tools=[tool], input=[  # type: ignore[list-item]
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ])
    (sent,) = engine.requests
    assert [m.role for m in sent.messages] == ["user", "assistant", "tool"]
    assert sent.messages[1].tool_calls[0]["function"]["name"] == "get_weather"
    assert sent.messages[2].tool_call_id == "c1"
    assert sent.params.tools[0]["function"]["name"] == "get_weather"


def test_responses_streamed_events(server_url: str) -> None:
    events = list(sdk(server_url).responses.create(model=ENSEMBLE, input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "blended answer number 0"
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "blended answer number 0" and final.usage is not None


def test_responses_stream_names_each_event(server_url: str) -> None:
    """``event: <type>`` before each ``data:`` line, as OpenAI's Responses stream sends."""
    with httpx.stream("POST", f"{server_url}/v1/responses", json={
            "model": ENSEMBLE, "input": "Hi", "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    pairs = [(lines[i - 1], line) for i, line in enumerate(lines)
             if line.startswith("data: ") and line != "data: [DONE]"]
    assert pairs and all(
        name == f"event: {json.loads(data.removeprefix('data: '))['type']}"
        for name, data in pairs)
    assert pairs[0][0] == "event: response.created"


async def test_responses_unsupported_state(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/responses", json={
        "model": SINGLE, "input": "x", "previous_response_id": "resp_1"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "previous_response_id"


async def test_openapi_documents_every_post_body(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
        body = schema["paths"][path]["post"]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[-1] in schema["components"]["schemas"]
    chat = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert {"messages", "tools", "response_format"} <= set(chat["properties"])
    missing = [p for p, ops in schema["paths"].items()
               if "post" in ops and "requestBody" not in ops["post"]
               and p not in ("/admin/reload", "/ui/login")]
    assert not missing
