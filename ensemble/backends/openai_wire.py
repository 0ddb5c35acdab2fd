"""OpenAI chat-completions wire shapes, shared by the HTTP and the in-process llama.cpp backend.

``chat_request_body`` builds the JSON body; ``parse_completion`` and ``StreamAssembler`` turn
upstream JSON (already decoded to Python values) into domain ``Completion``/``TextDelta`` values.
Anything that is not OpenAI's shape raises ``BackendProtocolError``; an upstream error object
raises ``BackendStatusError``. Only the fields blendgate reads are validated; extra fields pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ensemble.errors import BackendProtocolError, BackendStatusError
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta, Usage

logger = logging.getLogger(__name__)

_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Loose):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Message(_Loose):
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class _Choice(_Loose):
    index: int = 0
    message: _Message
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class _ChatCompletion(_Loose):
    choices: list[_Choice]
    usage: _Usage | None = None


class _Delta(_Loose):
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class _ChunkChoice(_Loose):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class _ChatCompletionChunk(_Loose):
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None


def chat_request_body(
    messages: Sequence[ChatMessage],
    params: SamplingParams,
    n: int,
    *,
    model: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/chat/completions``.

    Precedence, lowest first: ``defaults`` (backend config ``params``), the ``SamplingParams``
    fields that are set, then ``params.extra``. Streaming asks for a final usage chunk.
    """
    body: dict[str, Any] = dict(defaults or {})
    for key in _SAMPLING_FIELDS:
        value = getattr(params, key)
        if value is not None:
            body[key] = plain_json(value)
    if params.stop:
        body["stop"] = list(params.stop)
    if params.tools:
        body["tools"] = plain_json(params.tools)
    body.update(params.extra)
    if model is not None:
        body["model"] = model
    body["messages"] = [_message_json(m) for m in messages]
    body["n"] = n
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _message_json(message: ChatMessage) -> dict[str, Any]:
    content: Any = plain_json(message.parts) if message.parts else message.content
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = plain_json(message.tool_calls)
        out["content"] = message.content or None  # OpenAI's shape for a call-only turn
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def plain_json(value: Any) -> Any:
    """Mappings and tuples (frozen domain values) back to JSON's dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value


def merge_tool_call_deltas(pieces: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Streamed ``delta.tool_calls`` pieces -> whole tool calls, in ``index`` order.

    OpenAI's stream sends each call's id, type and name once and its ``arguments`` in pieces
    that concatenate; pieces are told apart by ``index``.
    """
    calls: dict[int, dict[str, Any]] = {}
    for piece in pieces:
        index = piece.get("index", 0)
        call = calls.setdefault(index, {"id": None, "type": "function",
                                        "function": {"name": "", "arguments": ""}})
        if piece.get("id"):
            call["id"] = piece["id"]
        if piece.get("type"):
            call["type"] = piece["type"]
        function = piece.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]
    return tuple(calls[i] for i in sorted(calls))


def merge_logprobs(pieces: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Streamed ``choice.logprobs`` pieces -> one ``logprobs`` object (lists concatenated)."""
    if not pieces:
        return None
    merged: dict[str, Any] = {}
    for piece in pieces:
        for key, value in piece.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif key not in merged:
                merged[key] = value
    return merged


def fit_tools(params: SamplingParams, max_chars: int | None, *, backend: str) -> SamplingParams:
    """``params`` with the tools this backend can take (its ``max_tools_chars``).

    Tool definitions longer than ``max_chars`` are left out when the model may answer in text
    anyway (``tool_choice`` absent or ``"auto"``): a small model then answers instead of
    spending its whole context on them (Open WebUI sends ~36 built-in tools, ~26 000 chars,
    with every chat). When a tool call is required, that is the client's error (400).
    """
    if max_chars is None or not params.tools:
        return params
    size = len(json.dumps(plain_json(params.tools), separators=(",", ":")))
    if size <= max_chars:
        return params
    if params.tool_choice in (None, "auto", "none"):
        logger.info("%s: %d tools (%d chars > max_tools_chars=%d) not sent; it answers in text",
                    backend, len(params.tools), size, max_chars)
        return params.without_tools()
    raise BackendStatusError(
        f"the tool definitions ({size} characters) exceed this backend's max_tools_chars "
        f"({max_chars}), and tool_choice requires a call", backend=backend, status=400)


def raise_for_error_object(data: Any, *, backend: str, status: int = 500) -> None:
    """Raise ``BackendStatusError`` when ``data`` is an OpenAI (or llama.cpp) error object."""
    if not isinstance(data, dict):
        return
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code < 600 else status
        detail = str(error.get("message", error))
        raise BackendStatusError(f"upstream error {status}: {detail}", backend=backend,
                                 status=status, detail=detail)
    if isinstance(error, str):
        raise BackendStatusError(f"upstream error {status}: {error}", backend=backend,
                                 status=status, detail=error)


def error_message(data: Any, fallback: str) -> str:
    """The human message of an OpenAI error body, or ``fallback`` (e.g. the raw text)."""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return fallback


def parse_completion(data: Any, *, backend: str) -> list[Completion]:
    """``n`` samples from a non-streamed chat completion, ordered by choice index.

    The call's usage rides on the first sample only (see ``Completion.usage``).
    """
    raise_for_error_object(data, backend=backend)
    try:
        parsed = _ChatCompletion.model_validate(data)
    except ValidationError as exc:
        raise BackendProtocolError(
            f"not a chat completion: {_first_error(exc)}", backend=backend) from exc
    if not parsed.choices:
        raise BackendProtocolError("chat completion without choices", backend=backend)
    usage = _to_usage(parsed.usage)
    ordered = sorted(parsed.choices, key=lambda c: c.index)
    return [
        Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            usage=usage if position == 0 else None,
            tool_calls=tuple(choice.message.tool_calls or ()),
            logprobs=choice.logprobs,
            refusal=choice.message.refusal,
        )
        for position, choice in enumerate(ordered)
    ]


class StreamAssembler:
    """Turns decoded stream chunks into ``TextDelta``s, holding back the end of each sample.

    Text is yielded at once. Each sample's finish is held until the stream ends, so the
    caller sees, per sample, exactly one empty delta carrying ``finish_reason``, and the very
    last delta carries the usage (summed over usage chunks: llama.cpp sends one per sample,
    vLLM one in all; prompt tokens count once).
    """

    def __init__(self, *, backend: str, n: int) -> None:
        self._backend = backend
        self._n = n
        self._finished: dict[int, str] = {}
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._saw_usage = False

    def feed(self, data: Any) -> Iterator[TextDelta]:
        """Deltas for one decoded ``data:`` event of the stream."""
        raise_for_error_object(data, backend=self._backend)
        try:
            chunk = _ChatCompletionChunk.model_validate(data)
        except ValidationError as exc:
            raise BackendProtocolError(
                f"not a chat completion chunk: {_first_error(exc)}", backend=self._backend
            ) from exc
        if chunk.usage is not None:
            self._saw_usage = True
            self._prompt_tokens = max(self._prompt_tokens, chunk.usage.prompt_tokens)
            self._completion_tokens += chunk.usage.completion_tokens
        for choice in chunk.choices:
            delta = choice.delta or _Delta()
            piece = TextDelta(text=delta.content or "", index=choice.index,
                              tool_calls=tuple(delta.tool_calls or ()),
                              logprobs=choice.logprobs or None, refusal=delta.refusal)
            if not piece.empty:
                yield piece
            if choice.finish_reason is not None:
                self._finished[choice.index] = choice.finish_reason

    @property
    def complete(self) -> bool:
        """Every requested sample reported a finish reason."""
        return len(self._finished) >= self._n

    def finish(self) -> list[TextDelta]:
        """The held-back end deltas, in sample order; the last one carries the usage."""
        usage = Usage(self._prompt_tokens, self._completion_tokens) if self._saw_usage else None
        indices = sorted(self._finished)
        return [
            TextDelta(
                text="",
                index=index,
                finish_reason=self._finished[index],
                usage=usage if position == len(indices) - 1 else None,
            )
            for position, index in enumerate(indices)
        ]


def _to_usage(usage: _Usage | None) -> Usage | None:
    return None if usage is None else Usage(usage.prompt_tokens, usage.completion_tokens)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    return f"{where}: {first['msg']}"
