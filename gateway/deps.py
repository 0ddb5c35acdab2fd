"""FastAPI dependencies, used as ``Annotated`` aliases so handler signatures read as types.

Everything app-scoped is built by ``create_app`` and kept on ``app.state``; these functions
only fetch it. ``ChatBody`` reads the body itself (with the size limit) so that oversized,
malformed or invalid bodies are answered in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from ensemble.rankers.base import Ranker
from ensemble.types import BlendRequest, BlendResult, ServedModel, StreamEnd, TextDelta
from gateway.auth import STATE_KEY
from gateway.completions import CompletionRequest
from gateway.convert import RequestLimits
from gateway.errors import APIError, from_validation_error
from gateway.metrics import GatewayMetrics
from gateway.protocol import ChatCompletionRequest
from gateway.responses import ResponsesRequest

BodyT = TypeVar("BodyT", bound=BaseModel)


class Engine(Protocol):
    """What the gateway needs of ``ensemble.engine.BlendEngine`` (tests pass doubles)."""

    def models(self) -> list[ServedModel]: ...

    async def complete(self, request: BlendRequest) -> BlendResult: ...

    def stream(self, request: BlendRequest) -> AsyncIterator[TextDelta | StreamEnd]: ...

    def service_ranker(self) -> Ranker | None: ...

    async def aclose(self) -> None: ...


# These are ``async def`` although they never await: FastAPI runs a sync dependency on a
# worker thread, which cost ~12% of the gateway's CPU per request (py-spy, bench_gateway.py).
async def get_engine(request: Request) -> Engine:
    """The engine once loaded; 503 with ``Retry-After`` while it loads (``gateway.loading``)."""
    engine: Engine = request.app.state.loading.engine()
    # a budgeted key's requests reserve and settle their tokens (gateway.budgets)
    return request.app.state.budgets.engine_for(getattr(request.state, STATE_KEY, None), engine)


async def get_limits(request: Request) -> RequestLimits:
    limits: RequestLimits = request.app.state.limits
    return limits


async def get_metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


async def read_body(request: Request, limit: int, media_type: str = "application/json") -> bytes:
    """The request's body, refusing (413) anything over ``limit`` bytes before reading it all,
    and (415) any body not declared ``media_type``: a web page can send ``text/plain``
    cross-origin without a CORS preflight, JSON it cannot. Only the /ui sign-in form reads
    another type (``application/x-www-form-urlencoded``)."""
    declared_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if declared_type != media_type:
        raise APIError(415, "The request body must be sent with 'Content-Type: "
                       f"{media_type}' (got {declared_type[:64] or 'none'!r}).",
                       param="Content-Type", code="unsupported_media_type")
    too_large = APIError(
        413, f"Request body is larger than this server's limit of {limit} bytes.",
        code="request_too_large",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def parse_body(request: Request, model: type[BodyT]) -> BodyT:
    """The JSON body as ``model``, within the size limit; errors in OpenAI's shape."""
    body = await read_body(request, request.app.state.config.server.max_body_bytes)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def get_chat_body(request: Request) -> ChatCompletionRequest:
    return await parse_body(request, ChatCompletionRequest)


async def get_completion_body(request: Request) -> CompletionRequest:
    return await parse_body(request, CompletionRequest)


async def get_responses_body(request: Request) -> ResponsesRequest:
    return await parse_body(request, ResponsesRequest)


EngineDep = Annotated[Engine, Depends(get_engine)]
LimitsDep = Annotated[RequestLimits, Depends(get_limits)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
ChatBody = Annotated[ChatCompletionRequest, Depends(get_chat_body)]
CompletionBody = Annotated[CompletionRequest, Depends(get_completion_body)]
ResponsesBody = Annotated[ResponsesRequest, Depends(get_responses_body)]
