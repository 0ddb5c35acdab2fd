"""A fuser as a service: ``POST /v1/fuse``, streamed as server-sent events.

It runs the engine's service fuser (``fuse_service`` in the config, else the first ensemble's
fuser) on candidates that were ranked elsewhere: this is what a ``fuser: {type: remote}`` of
another blendgate calls (``ensemble/fusers/remote.py``). The body gives ``prompt`` or
``messages`` (as ``/v1/rank``), the ``candidates`` best first, and optional sampling
``params``::

    curl -sN localhost:8000/v1/fuse -H "Authorization: Bearer $KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{"messages": [{"role": "user", "content": "hi"}],
           "candidates": ["Hello!", "Hi there."], "params": {"max_tokens": 64}}'
    # X-Blendgate-Fuser: genfuser             (the fuser producing the text, e.g. a fallback)
    # data: {"text": "Hello", "finish_reason": null, "usage": null}
    # ...
    # data: {"text": "", "finish_reason": "stop", "usage": {"prompt_tokens": .., ...}}
    # data: [DONE]

Errors before the first event keep their HTTP status (OpenAI's error body); a failure later
is one ``data: {"error": {...}}`` event, then ``data: [DONE]`` (``gateway.streaming``). A
client that hangs up stops the fuse.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from ensemble import Fuser
from ensemble.concurrency import aclose_shielded
from ensemble.types import SamplingParams, TextDelta
from gateway.deps import EngineDep, body_with_candidates, require_api_key, top_level_candidates
from gateway.errors import APIError
from gateway.metrics import STATE_STATUS
from gateway.ranking import PromptRequest, chat_messages
from gateway.streaming import open_stream

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])

FUSER_HEADER = "X-Blendgate-Fuser"  # the same name as ensemble.fusers.remote.FUSER_HEADER


class FuseParams(BaseModel):
    """``SamplingParams`` on the wire; ``extra`` holds backend-specific knobs (top_k, ...)."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_sampling(self) -> SamplingParams:
        return SamplingParams(**{**self.model_dump(), "stop": tuple(self.stop)})


class FuseRequest(PromptRequest):
    candidates: list[str] = Field(min_length=1, description="Top candidates, best first.")
    params: FuseParams = Field(default_factory=FuseParams)


class FuseUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class FuseChunk(BaseModel):
    text: str
    finish_reason: str | None = None
    usage: FuseUsage | None = None


async def _service_fuser(engine: EngineDep) -> Fuser:
    get = getattr(engine, "service_fuser", None)
    fuser: Fuser | None = get() if get is not None else None
    if fuser is None:
        raise APIError(501, "No fuser is configured on this server (set fuse_service).",
                       type="invalid_request_error", code="fuser_not_configured")
    return fuser


FuseBody = Annotated[FuseRequest, Depends(
    body_with_candidates(FuseRequest, "fused", top_level_candidates))]
ServiceFuser = Annotated[Fuser, Depends(_service_fuser)]


@router.post("/fuse")
async def fuse(request: Request, body: FuseBody, fuser: ServiceFuser) -> Response:
    stream = await fuser.fuse(chat_messages(body), body.candidates, body.params.to_sampling())
    response = await open_stream(
        request, fuse_chunks(stream.deltas), lambda status: setattr(request.state, STATE_STATUS, status))
    response.headers[FUSER_HEADER] = stream.fuser
    return response


async def fuse_chunks(deltas: AsyncIterator[TextDelta]) -> AsyncGenerator[BaseModel, None]:
    """``/v1/fuse`` stream chunks from the fuser's deltas; the upstream closes shielded on cancel."""
    try:
        async for delta in deltas:
            usage = delta.usage
            yield FuseChunk(
                text=delta.text, finish_reason=delta.finish_reason,
                usage=FuseUsage(prompt_tokens=usage.prompt_tokens,
                                completion_tokens=usage.completion_tokens) if usage else None)
    finally:
        await aclose_shielded(deltas)
