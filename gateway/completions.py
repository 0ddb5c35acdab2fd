"""Legacy text completions (``POST /v1/completions``), served through the chat path.

The ``prompt`` becomes one user message, so every model answers it the same way: a
pass-through model through its chat template, an ensemble by fanning the prompt out. This is
not raw continuation of the prompt (blendgate's backends speak chat); clients that need it
should call the model's own server. One prompt per request (a list of one is accepted);
``logprobs``, ``echo``, ``suffix`` and ``best_of`` answer 400.

Reference: https://platform.openai.com/docs/api-reference/completions
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ensemble.concurrency import aclose_shielded
from ensemble.errors import InvalidParamsError
from ensemble.types import BlendResult, StreamEnd, TextDelta
from gateway.convert import to_usage
from gateway.errors import from_validation_error
from gateway.protocol import (
    ChatCompletionRequest,
    CompletionUsage,
    OpenAIBaseModel,
    StreamOptions,
    _WireModel,
)


class CompletionRequest(OpenAIBaseModel):
    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    logprobs: int | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(_WireModel):
    omit_if_none = frozenset({"usage"})

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


def to_chat_request(request: CompletionRequest) -> ChatCompletionRequest:
    for key in ("logprobs", "echo", "suffix", "best_of"):
        if getattr(request, key) not in (None, False):
            raise InvalidParamsError(f"{key} is not supported on /v1/completions.", param=key)
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise InvalidParamsError("Send one prompt per request.", param="prompt")
    fields = request.model_dump(exclude={"prompt", "logprobs", "echo", "suffix", "best_of"},
                                exclude_none=True)
    try:
        return ChatCompletionRequest.model_validate(
            {**fields, "messages": [{"role": "user", "content": prompts[0]}]})
    except ValidationError as exc:  # the request's fault, a 400
        raise from_validation_error(exc) from None


def to_completion(result: BlendResult, *, completion_id: str, created: int) -> Completion:
    choices = [CompletionChoice(index=c.index, text=c.text, finish_reason=c.finish_reason)
               for c in result.choices]
    return Completion(id=completion_id, created=created, model=result.model, choices=choices,
                      usage=to_usage(result.usage))


async def to_completion_chunks(
    events: AsyncIterator[TextDelta | StreamEnd],
    *,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
    on_end: Callable[[StreamEnd], None],
) -> AsyncGenerator[Completion, None]:
    """Engine events -> ``text_completion`` chunks; usage in a last chunk when asked."""
    def chunk(choices: list[CompletionChoice], **fields: Any) -> Completion:
        return Completion(id=completion_id, created=created, model=model, choices=choices,
                          **fields)

    try:
        async for event in events:
            if isinstance(event, StreamEnd):
                on_end(event)
                if include_usage:
                    yield chunk([], usage=to_usage(event.usage))
                return
            if event.text or event.finish_reason is not None:
                yield chunk([CompletionChoice(index=event.index, text=event.text,
                                              finish_reason=event.finish_reason)])
    finally:
        await aclose_shielded(events)
