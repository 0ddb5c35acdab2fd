"""FastAPI dependencies, used as ``Annotated`` aliases so handler signatures read as types.

Everything app-scoped is one ``GatewayState`` built by ``create_app`` (``gateway.state``);
these functions only fetch from it. Bodies are read here (with the size limit) rather than by
FastAPI, so that oversized, malformed or invalid bodies are answered in OpenAI's error shape,
and a body that carries candidate lists is checked against ``server.max_candidates`` once,
by ``body_with_candidates``, for every route that takes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from ensemble.errors import InvalidParamsError
from gateway.auth import check_api_key
from gateway.completions import CompletionRequest
from gateway.convert import RequestLimits
from gateway.errors import APIError, from_validation_error
from gateway.loading import Engine  # also imported from here by gateway.ray_app
from gateway.metrics import GatewayMetrics
from gateway.protocol import ChatCompletionRequest
from gateway.responses.protocol import ResponsesRequest
from gateway.state import GatewayState, state_of

BodyT = TypeVar("BodyT", bound=BaseModel)
CandidateLists = Callable[[BodyT], Iterable[tuple[str, Sequence[str]]]]


class HasCandidates(Protocol):
    candidates: list[str]


def top_level_candidates(body: HasCandidates) -> list[tuple[str, Sequence[str]]]:
    """The one list of a body with ``candidates`` (``/v1/rank``, ``/v1/fuse``)."""
    return [("candidates", body.candidates)]


# These are ``async def`` although they never await: FastAPI runs a sync dependency on a
# worker thread, which cost ~12% of the gateway's CPU per request (py-spy, bench_gateway.py).
async def get_state(request: Request) -> GatewayState:
    return state_of(request.app)


StateDep = Annotated[GatewayState, Depends(get_state)]


async def require_api_key(request: Request, state: StateDep) -> None:
    """401 in OpenAI's shape unless a configured key is presented (``gateway.auth``)."""
    check_api_key(state.api_keys, request)


async def get_engine(state: StateDep) -> Engine:
    """The engine once loaded; 503 with ``Retry-After`` while it loads (``gateway.loading``)."""
    return state.loading.engine()


async def get_limits(state: StateDep) -> RequestLimits:
    return state.limits


async def get_metrics(state: StateDep) -> GatewayMetrics:
    return state.metrics


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
    body = await read_body(request, state_of(request.app).config.server.max_body_bytes)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def body_of(model: type[BodyT]) -> Callable[[Request], Awaitable[BodyT]]:
    """A dependency parsing the body as ``model`` (``parse_body``)."""
    async def parse(request: Request) -> BodyT:
        return await parse_body(request, model)
    return parse


def body_with_candidates(
    model: type[BodyT], action: str, candidate_lists: CandidateLists[BodyT]
) -> Callable[[Request], Awaitable[BodyT]]:
    """A dependency parsing the body as ``model``, then refusing (400) any of its
    ``candidate_lists`` longer than ``server.max_candidates``; ``action`` says what is done
    to them ("ranked")."""
    async def parse(request: Request) -> BodyT:
        body = await parse_body(request, model)
        limit = state_of(request.app).config.server.max_candidates
        for param, candidates in candidate_lists(body):
            if len(candidates) > limit:
                raise InvalidParamsError(
                    f"At most {limit} candidates can be {action} per request; "
                    f"{param} has {len(candidates)}.", param=param)
        return body
    return parse


EngineDep = Annotated[Engine, Depends(get_engine)]
LimitsDep = Annotated[RequestLimits, Depends(get_limits)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
ChatBody = Annotated[ChatCompletionRequest, Depends(body_of(ChatCompletionRequest))]
CompletionBody = Annotated[CompletionRequest, Depends(body_of(CompletionRequest))]
ResponsesBody = Annotated[ResponsesRequest, Depends(body_of(ResponsesRequest))]
