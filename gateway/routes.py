"""Thin HTTP handlers: parse (``deps``), convert (``convert``), call the engine, frame.

``public`` needs no key (``/health``, ``/metrics``); ``api`` is everything under ``/v1``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ensemble.concurrency import aclose_shielded
from ensemble.errors import UnknownModelError
from ensemble.experiments import Assignment, ExperimentRuntime, Served
from ensemble.types import ServedModel, StreamEnd, TextDelta
from gateway import completions
from gateway.access import STATE_COMPLETION_ID, observe_answer
from gateway.convert import to_blend_request, to_chat_completion, to_model_list
from gateway.deps import (
    ChatBody,
    CompletionBody,
    EngineDep,
    LimitsDep,
    MetricsDep,
    StateDep,
    require_api_key,
)
from gateway.experiments import StreamRecorder, arm_headers, experiment_info, sticky_key
from gateway.loading import Engine
from gateway.metrics import STATE_MODEL, STATE_STATUS
from gateway.protocol import ChatCompletionRequest, ChatCompletionResponse, ModelCard, ModelList
from gateway.state import GatewayState
from gateway.streaming import ChunkHeader, cancel_on_disconnect, open_stream, to_chunks

BACKEND_HEADER = "x-blendgate-backend"  # which backend of a fallback chain answered

public = APIRouter()
api = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@public.get("/health")
async def health(gateway: StateDep) -> Response:
    """200 ``{"status": "ok", "models_loaded": N}`` once the models are loaded; 503 with
    ``"loading"`` (and the seconds so far) or ``"failed"`` before, ``"draining"`` after
    SIGTERM. No key is needed, so no model ids are listed (``GET /v1/models`` lists them)."""
    loading = gateway.loading
    state = "draining" if gateway.drain.draining else loading.state
    body: dict[str, object] = {"status": state}
    if state == "ok":
        body["models_loaded"] = len(loading.engine().models())
    elif state == "loading":
        body["elapsed_s"] = round(loading.elapsed_s(), 1)
    return JSONResponse(body, status_code=200 if state == "ok" else 503)


@public.get("/metrics")
async def metrics(metrics: MetricsDep) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@api.get("/models", response_model=ModelList)
async def list_models(engine: EngineDep, gateway: StateDep) -> Response:
    models = to_model_list(_served_models(engine, gateway), created=int(time.time()))
    return Response(models.model_dump_json(), media_type="application/json")


@api.get("/models/{model_id:path}", response_model=ModelCard)
async def retrieve_model(model_id: str, engine: EngineDep, gateway: StateDep) -> Response:
    """One served model (ids may contain "/", as in ``org/model``); 404 if not served."""
    served = _served_models(engine, gateway)
    cards = to_model_list([m for m in served if m.id == model_id], created=int(time.time()))
    if not cards.data:
        raise UnknownModelError(model_id)
    return Response(cards.data[0].model_dump_json(), media_type="application/json")


def _served_models(engine: Engine, gateway: GatewayState) -> list[ServedModel]:
    """The engine's models, and the experiment ids (each served by one of its arms)."""
    served = engine.models()
    if gateway.experiments is not None:
        served += [ServedModel(e.id, "experiment", tuple(a.model for a in e.arms))
                   for e in gateway.experiments.experiments()]
    return served


@api.post("/completions", response_model=completions.Completion)
async def legacy_completions(
    request: Request, body: CompletionBody, engine: EngineDep, limits: LimitsDep,
    metrics: MetricsDep,
) -> Response:
    """Legacy text completions, through the chat path (see ``gateway.completions``)."""
    setattr(request.state, STATE_MODEL, body.model)
    blend_request = to_blend_request(completions.to_chat_request(body), limits)
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    setattr(request.state, STATE_COMPLETION_ID, completion_id)
    if not body.stream:
        result = await cancel_on_disconnect(request, engine.complete(blend_request))
        observe_answer(request, metrics, result.model, result.usage, result.report)
        response = completions.to_completion(result, completion_id=completion_id,
                                             created=created)
        return Response(response.model_dump_json(), media_type="application/json")
    chunks = completions.to_completion_chunks(
        engine.stream(blend_request), completion_id=completion_id, created=created,
        model=body.model,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        on_end=lambda end: observe_answer(request, metrics, body.model, end.usage, end.report))
    return await open_stream(
        request, chunks, lambda status: setattr(request.state, STATE_STATUS, status))


@api.post("/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(
    request: Request, body: ChatBody, engine: EngineDep, limits: LimitsDep, metrics: MetricsDep,
    gateway: StateDep,
) -> Response:
    setattr(request.state, STATE_MODEL, body.model)
    runtime = gateway.experiments
    body, assignment = _assigned(runtime, body, request)
    blend_request = to_blend_request(body, limits)
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    setattr(request.state, STATE_COMPLETION_ID, completion_id)
    headers = arm_headers(assignment)
    if not body.stream:
        started = time.perf_counter()
        result = await cancel_on_disconnect(request, engine.complete(blend_request))
        observe_answer(request, metrics, result.model, result.usage, result.report)
        if result.choices and (backend := result.choices[0].backend) is not None:
            headers[BACKEND_HEADER] = backend
            metrics.observe_backend(body.model, backend)
        response = to_chat_completion(
            result, completion_id=completion_id, created=created,
            include_report=blend_request.return_candidates,
            experiment=experiment_info(assignment),
        )
        if runtime is not None:
            runtime.record(Served(
                id=completion_id, request=blend_request, text=result.choices[0].text,
                usage=result.usage, latency_s=time.perf_counter() - started,
                report=result.report, assignment=assignment))
        return Response(response.model_dump_json(), media_type="application/json",
                        headers=headers)

    requested = time.perf_counter()
    events = on_first_token(engine.stream(blend_request), lambda: metrics.observe_first_token(
        body.model, time.perf_counter() - requested))
    answered_by: list[str] = []  # the backend of a fallback chain that answered, once known

    def on_backend(name: str) -> None:
        answered_by.append(name)
        metrics.observe_backend(body.model, name)

    events = _on_backend(events, on_backend)
    if runtime is not None:
        events = StreamRecorder(runtime, completion_id, blend_request, assignment).follow(events)
    chunks = to_chunks(
        events,
        ChunkHeader(completion_id, created, body.model),
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        include_report=blend_request.return_candidates,
        on_end=lambda end: observe_answer(request, metrics, body.model, end.usage, end.report),
        experiment=experiment_info(assignment),
    )
    stream = await open_stream(
        request, chunks, lambda status: setattr(request.state, STATE_STATUS, status))
    stream.headers.update(headers)
    if answered_by:  # known when the first token came before the headers (open_stream waits)
        stream.headers[BACKEND_HEADER] = answered_by[0]
    return stream


def _assigned(
    runtime: ExperimentRuntime | None, body: ChatCompletionRequest, request: Request
) -> tuple[ChatCompletionRequest, Assignment | None]:
    """``body`` as the arm its user is assigned to serves it, when it names an experiment id;
    else ``body`` itself and no assignment."""
    if runtime is None:
        return body, None
    assignment = runtime.assign(body.model, sticky_key(runtime, body.model, body.user,
                                                       request.headers))
    if assignment is None:
        return body, None
    return body.model_copy(update={"model": assignment.model}), assignment


async def on_first_token(
    events: AsyncIterator[TextDelta | StreamEnd], first: Callable[[], None]
) -> AsyncGenerator[TextDelta | StreamEnd, None]:
    """``events``, calling ``first()`` when the first content text passes (time to first token)."""
    waiting = True
    try:
        async for event in events:
            if waiting and isinstance(event, TextDelta) and event.text:
                waiting = False
                first()
            yield event
    finally:
        await aclose_shielded(events)


async def _on_backend(
    events: AsyncIterator[TextDelta | StreamEnd], known: Callable[[str], None]
) -> AsyncGenerator[TextDelta | StreamEnd, None]:
    """``events``, calling ``known(backend)`` at the first delta that names its backend."""
    waiting = True
    try:
        async for event in events:
            if waiting and isinstance(event, TextDelta) and event.backend is not None:
                waiting = False
                known(event.backend)
            yield event
    finally:
        await aclose_shielded(events)
