"""``POST /v1/responses``: parse, convert to a chat request, call the engine, frame."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from gateway.access import observe_answer
from gateway.convert import to_blend_request
from gateway.deps import EngineDep, LimitsDep, MetricsDep, ResponsesBody, require_api_key
from gateway.metrics import STATE_MODEL, STATE_STATUS
from gateway.responses.convert import ResponseFrame, to_chat_request, to_response
from gateway.responses.protocol import ResponseObject
from gateway.responses.streaming import to_events
from gateway.streaming import cancel_on_disconnect, open_stream

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@router.post("/responses", response_model=ResponseObject)
async def create_response(
    request: Request, body: ResponsesBody, engine: EngineDep, limits: LimitsDep,
    metrics: MetricsDep,
) -> Response:
    """The Responses API's text and function-tool subset (see ``gateway.responses``)."""
    setattr(request.state, STATE_MODEL, body.model)
    blend_request = to_blend_request(to_chat_request(body), limits)
    frame = ResponseFrame(body, body.model)
    if not body.stream:
        result = await cancel_on_disconnect(request, engine.complete(blend_request))
        observe_answer(request, metrics, result.model, result.usage, result.report)
        response = to_response(frame, result)
        return Response(response.model_dump_json(), media_type="application/json")
    events = to_events(
        engine.stream(blend_request), frame,
        on_end=lambda end: observe_answer(request, metrics, body.model, end.usage, end.report))
    return await open_stream(
        request, events, lambda status: setattr(request.state, STATE_STATUS, status))
