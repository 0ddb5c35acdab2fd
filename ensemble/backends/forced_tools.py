"""``tool_choice: "required"`` or a named function, for a llama.cpp that does not enforce it.

llama.cpp parses tool calls out of free text (``<tool_call>`` with the ChatML template), but it
does not constrain the text to a call: a small model asked for a required call may simply
answer. So the in-process backend asks for the call as grammar-constrained JSON instead
(``response_format`` json_schema: ``{"name": <one of the allowed tools>, "arguments": <its
parameters>}``, which llama.cpp compiles to a grammar) and turns that JSON into an OpenAI tool
call. The tools stay in the request, so the chat template still shows them to the model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from ensemble.types import SamplingParams, TextDelta


def forced_call_schema(params: SamplingParams) -> dict[str, Any] | None:
    """The JSON Schema of one call to an allowed tool, when ``tool_choice`` requires a call."""
    choice = params.tool_choice
    if not params.tools or choice in (None, "auto", "none"):
        return None
    wanted = choice["function"]["name"] if isinstance(choice, Mapping) else None
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": function["name"]},
                "arguments": function.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for function in (tool["function"] for tool in params.tools)
        if wanted is None or function["name"] == wanted
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def constrained(params: SamplingParams, schema: Mapping[str, Any]) -> SamplingParams:
    """``params`` asking for ``schema``-shaped JSON instead of a (not enforced) tool call."""
    return replace(params, tool_choice=None, parallel_tool_calls=None, response_format={
        "type": "json_schema", "json_schema": {"name": "tool_call", "schema": dict(schema)}})


async def as_tool_calls(deltas: AsyncIterator[TextDelta]) -> AsyncGenerator[TextDelta, None]:
    """The constrained JSON of each sample, turned into one streamed tool call.

    Text is held back per sample; at its finish, one delta carries the whole call (OpenAI's
    chunk shape: index, id, type, function name and arguments) and the finish reason becomes
    ``tool_calls``. Everything else (usage, logprobs) passes on unchanged.
    """
    texts: dict[int, list[str]] = {}
    async for delta in deltas:
        if delta.text:
            texts.setdefault(delta.index, []).append(delta.text)
        if delta.finish_reason is None:
            if delta.logprobs or delta.usage:
                yield replace(delta, text="")
            continue
        text = "".join(texts.pop(delta.index, []))
        call = _tool_call(text)
        if call is None:  # cut short (max_tokens): hand back what was written, as text
            yield replace(delta, text=text)
        else:
            yield replace(delta, text="", tool_calls=(call,), finish_reason="tool_calls")


def _tool_call(text: str) -> dict[str, Any] | None:
    """``{"name", "arguments"}`` JSON -> an OpenAI tool call; None if generation was cut."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None  # e.g. max_tokens cut the JSON; the finish reason says "length"
    return {
        "index": 0,
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": value["name"], "arguments": json.dumps(value["arguments"])},
    }
