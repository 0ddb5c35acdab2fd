"""HTTP side of A/B testing: feedback, experiment statistics, reload, and the glue the chat
route uses to route a request to an experiment's arm and record what it answered.

The library (``ensemble.experiments``) does the work; this module parses, renders and maps its
errors to OpenAI's shape: an unknown completion id is 404, a bad rating 400, a store that
cannot answer 503.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ensemble.concurrency import aclose_shielded
from ensemble.errors import ConfigError
from ensemble.experiments import (
    Assignment,
    ExperimentRuntime,
    Served,
    StoreDisabledError,
    StoreUnavailable,
    UnknownCompletionError,
)
from ensemble.types import BlendReport, BlendRequest, StreamEnd, TextDelta, Usage
from gateway.config import load_config
from gateway.deps import StateDep, read_body, require_api_key
from gateway.errors import APIError, from_validation_error
from gateway.protocol import BlendExperiment
from gateway.state import GatewayState

logger = logging.getLogger(__name__)

ARM_HEADER = "x-blendgate-arm"
EXPERIMENT_HEADER = "x-blendgate-experiment"

router = APIRouter(dependencies=[Depends(require_api_key)])


# --------------------------------------------------------------------------- wire models


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: one vote on a completion, as a 1-5 rating or thumbs up/down."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, description="the completion id")
    rating: Annotated[int | None, Field(ge=1, le=5)] = None
    thumbs: Literal["up", "down"] | None = None
    comment: Annotated[str | None, Field(max_length=4000)] = None

    @model_validator(mode="after")
    def _one_vote(self) -> FeedbackRequest:
        if (self.rating is None) == (self.thumbs is None):
            raise ValueError("send exactly one of `rating` (1-5) or `thumbs` ('up' / 'down')")
        return self


# --------------------------------------------------------------------------- dependencies


async def get_runtime(gateway: StateDep) -> ExperimentRuntime:
    return _started_runtime(gateway)


def _started_runtime(gateway: GatewayState) -> ExperimentRuntime:
    gateway.loading.engine()  # 503 while the models (and judges) load
    # the lifespan starts the runtime before the engine is served
    assert gateway.experiments is not None
    return gateway.experiments


RuntimeDep = Annotated[ExperimentRuntime, Depends(get_runtime)]


def _store_error(exc: Exception) -> APIError:
    if isinstance(exc, UnknownCompletionError):
        return APIError(404, str(exc), param="id", code="completion_not_found")
    if isinstance(exc, StoreDisabledError):
        return APIError(404, str(exc), code="store_disabled")
    return APIError(503, str(exc), type="server_error", code="store_unavailable",
                    headers={"Retry-After": "5"})


# --------------------------------------------------------------------------- routes


@router.post("/v1/feedback")
async def feedback(request: Request, runtime: RuntimeDep) -> Response:
    body = await read_body(request, 64_000)
    try:
        vote = FeedbackRequest.model_validate_json(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    try:
        event = await runtime.feedback(vote.id, rating=vote.rating, thumbs=vote.thumbs,
                                       comment=vote.comment)
    except (UnknownCompletionError, StoreDisabledError, StoreUnavailable) as exc:
        raise _store_error(exc) from None
    return JSONResponse({
        "object": "feedback", "id": event.id, "completion_id": event.completion_id,
        "model": event.model, "experiment": event.experiment, "arm": event.arm,
        "score": event.score,
    })


@router.get("/v1/experiments")
async def list_experiments(runtime: RuntimeDep) -> Response:
    try:
        data = [_stats_json(await runtime.experiment_stats(e)) for e in runtime.experiments()]
        models = [{"model": row.key, "feedback_votes": row.votes,
                   "feedback_mean_score": row.mean_score}
                  for row in await runtime.model_feedback()] if runtime.store else []
    except (StoreDisabledError, StoreUnavailable) as exc:
        raise _store_error(exc) from None
    return JSONResponse({"object": "list", "data": data, "models": models,
                         "store": _store_json(runtime)})


@router.get("/v1/experiments/{experiment_id}")
async def get_experiment(experiment_id: str, runtime: RuntimeDep) -> Response:
    experiment = runtime.experiment(experiment_id)
    if experiment is None:
        raise APIError(404, f"No experiment with id {experiment_id!r}.",
                       code="experiment_not_found")
    try:
        stats = await runtime.experiment_stats(experiment)
    except (StoreDisabledError, StoreUnavailable) as exc:
        raise _store_error(exc) from None
    return JSONResponse(_stats_json(stats))


@router.post("/admin/reload")
async def reload(runtime: RuntimeDep, gateway: StateDep) -> Response:
    """Re-read the config file and apply its ``experiments:`` (weights, shadow, judge)."""
    return JSONResponse(await reload_experiments(gateway))


async def reload_experiments(gateway: GatewayState) -> dict[str, Any]:
    """Shared by ``POST /admin/reload`` and SIGHUP. Only ``experiments:`` is applied; other
    changes need a restart and are reported as such."""
    path = gateway.config_path
    if path is None:
        raise APIError(409, "This gateway was not started from a config file; nothing to reload.",
                       code="no_config_file")
    try:
        new = load_config(path)
    except ConfigError as exc:
        raise APIError(400, f"config not reloaded: {exc}", code="invalid_config") from None
    old = gateway.config
    runtime = _started_runtime(gateway)
    experiment_ids = {e.id for e in old.experiments}
    if {e.id for e in new.experiments} != experiment_ids:
        raise APIError(409, "config not reloaded: adding or removing experiments needs a "
                       "restart; reload changes their weights, shadow and judge.",
                       code="restart_required")
    await runtime.reload(new.experiments)
    gateway.config = old.model_copy(update={"experiments": new.experiments})
    rest_changed = (new.model_copy(update={"experiments": []})
                    != old.model_copy(update={"experiments": []}))
    logger.info("reloaded experiments from %s", path)
    return {"object": "reload", "experiments": sorted(experiment_ids),
            "restart_required_for_other_changes": rest_changed}


# --------------------------------------------------------------------------- chat glue


def experiment_info(assignment: Assignment | None) -> BlendExperiment | None:
    if assignment is None:
        return None
    return BlendExperiment(id=assignment.experiment.id, arm=assignment.arm,
                           model=assignment.model)


def sticky_key(runtime: ExperimentRuntime, model_id: str, user: str | None,
               headers: Mapping[str, str]) -> str | None:
    """Who a request to an experiment is for: its ``user`` field, else the experiment's
    ``sticky_header``; None (a random arm) without either, or when ``model_id`` is no
    experiment."""
    experiment = runtime.experiment(model_id)
    if experiment is None:
        return None
    return user or headers.get(experiment.sticky_header.lower()) or None


def arm_headers(assignment: Assignment | None) -> dict[str, str]:
    if assignment is None:
        return {}
    return {EXPERIMENT_HEADER: assignment.experiment.id, ARM_HEADER: assignment.arm}


class StreamRecorder:
    """Follows a streamed answer (choice 0's text) and records it when the stream ends."""

    def __init__(self, runtime: ExperimentRuntime, completion_id: str, request: BlendRequest,
                 assignment: Assignment | None) -> None:
        self._runtime = runtime
        self._id = completion_id
        self._request = request
        self._assignment = assignment
        self._parts: list[str] = []
        self._started = time.perf_counter()

    async def follow(self, events: Any) -> Any:
        try:
            async for event in events:
                if isinstance(event, TextDelta) and event.index == 0:
                    self._parts.append(event.text)
                elif isinstance(event, StreamEnd):
                    self._record(event.usage, event.report)
                yield event
        finally:
            await aclose_shielded(events)

    def _record(self, usage: Usage, report: BlendReport | None) -> None:
        self._runtime.record(Served(
            id=self._id, request=self._request, text="".join(self._parts), usage=usage,
            latency_s=time.perf_counter() - self._started, report=report,
            assignment=self._assignment))


# --------------------------------------------------------------------------- rendering


def _stats_json(stats: Any) -> dict[str, Any]:
    data: dict[str, Any] = dataclasses.asdict(stats)
    data["object"] = "experiment"
    return data


def _store_json(runtime: ExperimentRuntime) -> dict[str, Any] | None:
    store = runtime.store
    if store is None:
        return None
    return {"url": store.url, "queued": store.queued(), **dataclasses.asdict(store.stats)}
