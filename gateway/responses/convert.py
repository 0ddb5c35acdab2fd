"""Responses request -> ``ChatCompletionRequest`` (served by the chat path), and engine
results -> the ``response`` object (``ResponseFrame`` builds what every object and event of
one request repeats)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import ValidationError

from ensemble.errors import InvalidParamsError
from ensemble.types import BlendResult, Usage
from gateway.errors import from_validation_error
from gateway.protocol import ChatCompletionRequest
from gateway.responses.protocol import (
    FunctionTool,
    InputItem,
    InputPart,
    ResponseObject,
    ResponsesRequest,
)


def to_chat_request(request: ResponsesRequest) -> ChatCompletionRequest:
    """The equivalent chat request; what cannot be expressed raises ``InvalidParamsError``."""
    for key in ("previous_response_id", "conversation"):
        if getattr(request, key) is not None:
            raise InvalidParamsError(f"{key} is not supported: blendgate stores no responses; "
                                     "send the whole conversation as input.", param=key)
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
    else:
        for i, item in enumerate(request.input):
            _append_item(messages, item, f"input[{i}]")
    chat: dict[str, Any] = {
        "model": request.model, "messages": messages, "stream": request.stream,
        "max_tokens": request.max_output_tokens, "temperature": request.temperature,
        "top_p": request.top_p, "user": request.user,
        "parallel_tool_calls": request.parallel_tool_calls,
    }
    if request.tools:
        chat["tools"] = [_chat_tool(t, i) for i, t in enumerate(request.tools)]
    if request.tool_choice is not None:
        chat["tool_choice"] = _chat_tool_choice(request.tool_choice)
    fmt = request.text.format if request.text else None
    if fmt is not None and fmt.type != "text":
        chat["response_format"] = (
            {"type": "json_object"} if fmt.type == "json_object" else
            {"type": "json_schema", "json_schema": {
                "name": fmt.name or "output", "schema": fmt.schema_, "strict": fmt.strict}})
    try:
        return ChatCompletionRequest.model_validate(
            {k: v for k, v in chat.items() if v is not None})
    except ValidationError as exc:  # e.g. an empty input list: the request's fault, a 400
        raise from_validation_error(exc) from None


def _append_item(messages: list[dict[str, Any]], item: InputItem, param: str) -> None:
    if item.type == "function_call":
        call = {"id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments or "{}"}}
        if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
            messages[-1]["tool_calls"].append(call)  # parallel calls of one turn
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif item.type == "function_call_output":
        messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
    elif item.type == "message":
        if item.role is None:
            raise InvalidParamsError("A message item needs a role.", param=f"{param}.role")
        content = item.content
        if isinstance(content, list):
            content = "".join(_part_text(part, f"{param}.content[{j}]")
                              for j, part in enumerate(content))
        messages.append({"role": item.role, "content": content or ""})
    else:
        raise InvalidParamsError(f"Input items of type '{item.type}' are not supported.",
                                 param=f"{param}.type")


def _part_text(part: InputPart, param: str) -> str:
    if part.type in ("input_text", "output_text", "text") and part.text is not None:
        return part.text
    raise InvalidParamsError(f"'{part.type}' content is not supported: text only.", param=param)


def _chat_tool(tool: FunctionTool, index: int) -> dict[str, Any]:
    if tool.type != "function" or not tool.name:
        raise InvalidParamsError(f"Tools of type '{tool.type}' are not supported; only "
                                 "function tools are.", param=f"tools[{index}].type")
    function = {"name": tool.name, "description": tool.description,
                "parameters": tool.parameters, "strict": tool.strict}
    return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


class ResponseFrame:
    """Builds the ``response`` object and its events for one request."""

    def __init__(self, request: ResponsesRequest, model: str) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.message_id = f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.model = model
        self._echo = {
            "instructions": request.instructions, "metadata": request.metadata or {},
            "temperature": request.temperature, "top_p": request.top_p,
            "max_output_tokens": request.max_output_tokens,
            "tools": [t.model_dump(by_alias=True, exclude_none=True)
                      for t in request.tools or ()],
            "tool_choice": request.tool_choice or "auto",
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "text": {"format": (request.text.format.model_dump(by_alias=True, exclude_none=True)
                                if request.text and request.text.format
                                else {"type": "text"})},
            "error": None, "incomplete_details": None, "previous_response_id": None,
            "store": False, "truncation": "disabled", "reasoning": None, "user": request.user,
        }

    def response(self, status: str, output: list[dict[str, Any]],
                 usage: Usage | None = None) -> ResponseObject:
        return ResponseObject(id=self.id, created_at=self.created_at, status=status,
                              model=self.model, output=output,
                              usage=_usage(usage) if usage is not None else None, **self._echo)

    def message(self, text: str, status: str = "completed") -> dict[str, Any]:
        return {"type": "message", "id": self.message_id, "status": status,
                "role": "assistant", "content": [] if status == "in_progress" else
                [{"type": "output_text", "text": text, "annotations": []}]}

    def function_call(self, call: Any, index: int) -> dict[str, Any]:
        function = call["function"]
        return {"type": "function_call", "id": f"fc_{self.id[5:]}_{index}",
                "call_id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "name": function["name"], "arguments": function.get("arguments") or "",
                "status": "completed"}

    def output(self, text: str, tool_calls: Any) -> list[dict[str, Any]]:
        items = [self.function_call(c, i) for i, c in enumerate(tool_calls)]
        return ([self.message(text)] if text or not items else []) + items


def to_response(frame: ResponseFrame, result: BlendResult) -> ResponseObject:
    choice = result.choices[0]
    status = "incomplete" if choice.finish_reason == "length" else "completed"
    response = frame.response(status, frame.output(choice.text, choice.tool_calls),
                              result.usage)
    if status == "incomplete":
        response.incomplete_details = {"reason": "max_output_tokens"}  # type: ignore[attr-defined]
    return response
