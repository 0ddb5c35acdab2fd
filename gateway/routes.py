"""Thin HTTP handlers: parse (``deps``), convert (``convert``), call the engine, frame.

``public`` needs no key (``/health``, ``/metrics``); ``api`` is everything under ``/v1``.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.auth import require_api_key
from gateway.convert import (
    ChunkHeader,
    to_blend_request,
    to_chat_completion,
    to_chunks,
    to_model_list,
)
from gateway.deps import ChatBody, EngineDep, LimitsDep, MetricsDep
from gateway.metrics import STATE_MODEL, STATE_STATUS
from gateway.protocol import ChatCompletionResponse, ModelList
from gateway.streaming import cancel_on_disconnect, open_stream

public = APIRouter()
api = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@public.get("/health")
async def health(engine: EngineDep) -> dict[str, object]:
    return {"status": "ok", "models": [m.id for m in engine.models()]}


@public.get("/metrics")
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@api.get("/models", response_model=ModelList)
async def list_models(engine: EngineDep) -> Response:
    models = to_model_list(engine.models(), created=int(time.time()))
    return Response(models.model_dump_json(), media_type="application/json")


@api.post("/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(
    request: Request, body: ChatBody, engine: EngineDep, limits: LimitsDep, metrics: MetricsDep
) -> Response:
    setattr(request.state, STATE_MODEL, body.model)
    blend_request = to_blend_request(body, limits)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not body.stream:
        result = await cancel_on_disconnect(request, engine.complete(blend_request))
        metrics.observe_report(result.model, result.report)
        response = to_chat_completion(
            result, completion_id=completion_id, created=created,
            include_report=blend_request.return_candidates,
        )
        return Response(response.model_dump_json(), media_type="application/json")

    chunks = to_chunks(
        engine.stream(blend_request),
        ChunkHeader(completion_id, created, body.model),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        include_report=blend_request.return_candidates,
        on_end=lambda end: metrics.observe_report(body.model, end.report),
    )
    return await open_stream(
        request, chunks, lambda status: setattr(request.state, STATE_STATUS, status))
