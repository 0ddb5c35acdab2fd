"""OpenAI chat-completions wire shapes, shared by the HTTP and the in-process llama.cpp backend.

``chat_request_body`` builds the JSON body; ``parse_completion`` and ``StreamAssembler`` turn
upstream JSON (already decoded to Python values) into domain ``Completion``/``TextDelta`` values.
Anything that is not OpenAI's shape raises ``BackendProtocolError``; an upstream error object
raises ``BackendStatusError``. Only the fields blendgate reads are validated; extra fields pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ensemble.errors import BackendProtocolError, BackendStatusError
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta, Usage

_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Loose):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Message(_Loose):
    content: str | None = None


class _Choice(_Loose):
    index: int = 0
    message: _Message
    finish_reason: str | None = None


class _ChatCompletion(_Loose):
    choices: list[_Choice]
    usage: _Usage | None = None


class _Delta(_Loose):
    content: str | None = None


class _ChunkChoice(_Loose):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


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
            body[key] = dict(value) if key == "logit_bias" else value
    if params.stop:
        body["stop"] = list(params.stop)
    body.update(params.extra)
    if model is not None:
        body["model"] = model
    body["messages"] = [_message_json(m) for m in messages]
    body["n"] = n
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _message_json(message: ChatMessage) -> dict[str, str]:
    out = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    return out


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
            text = choice.delta.content if choice.delta is not None else None
            if text:
                yield TextDelta(text=text, index=choice.index)
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
