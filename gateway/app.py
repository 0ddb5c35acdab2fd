"""``create_app(config)``: the FastAPI app, its lifespan and its error handlers.

Nothing happens at import. The lifespan builds the engine from the parsed config
(``gateway.loading``; in the background for ``blendgate serve``, so the port opens at once),
or uses the one passed in, which the caller then owns and closes. Routes reach it through
the app's ``GatewayState`` (``gateway.state``), whose ``loading`` answers 503 while the
models load.

Every error leaves in OpenAI's shape ``{"error": {message, type, param, code}}``:
``APIError`` as is, ``BlendError`` through ``gateway.errors``' table, routing errors (404/405)
by status, and anything else as a generic 500 logged with its stack.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensemble import BlendEngine, member_labels
from ensemble.config import BlendgateConfig, EnsembleModelConfig
from ensemble.errors import BlendError
from ensemble.experiments import ExperimentRuntime
from gateway import experiments, fusing, ranking, routes, ui
from gateway.access import AccessMiddleware
from gateway.auth import APIKeys
from gateway.completions import CompletionRequest
from gateway.config import GatewayConfig, as_gateway_config
from gateway.convert import RequestLimits
from gateway.drain import Drain
from gateway.errors import APIError, from_blend_error, internal_error
from gateway.experiment_metrics import ExperimentCollector
from gateway.loading import Engine, EngineLoading
from gateway.metrics import GatewayMetrics
from gateway.openapi import document_bodies
from gateway.protocol import ChatCompletionRequest
from gateway.responses import router as responses_router
from gateway.responses.protocol import ResponsesRequest
from gateway.settings import package_version, read_api_keys
from gateway.state import GatewayState
from gateway.streaming import ClientDisconnected

logger = logging.getLogger(__name__)


def create_app(
    config: BlendgateConfig,
    *,
    engine: Engine | None = None,
    config_path: Path | None = None,
    build_engine: Callable[[BlendgateConfig], Awaitable[Engine]] | None = None,
    load_in_background: bool = False,
) -> FastAPI:
    """The gateway for ``config``. Pass ``engine`` to serve one built elsewhere (tests);
    otherwise the lifespan runs ``build_engine(config)`` (default ``BlendEngine.from_config``;
    the Ray Serve ingress builds rankers and fusers as deployment clients).
    ``load_in_background`` (``blendgate serve``) lets the server listen while it runs, with
    ``/health`` at 503 "loading" until it is done; otherwise start-up waits for it and fails
    with it. ``config_path`` is the file ``POST /admin/reload`` (and SIGHUP) re-reads.
    A library ``BlendgateConfig`` is served with the default ``server:`` and ``ray:``."""
    config = as_gateway_config(config)

    async def start_experiments(ready: Engine) -> None:
        # judges are models too: they load with the engine, before it is served. ``state``
        # is bound below, long before the lifespan runs this.
        state.experiments = await ExperimentRuntime.start(config, ready)  # type: ignore[arg-type]

    if engine is not None:
        loading = EngineLoading(engine=engine, prepare=start_experiments)
    else:
        loading = EngineLoading(lambda: (build_engine or BlendEngine.from_config)(config),
                                prepare=start_experiments)
    state = _gateway_state(config, config_path, loading)
    # redirect_slashes=False: a POST to ``/v1/chat/completions/`` is a 404, not a 307 whose
    # Location is built from the client's Host header.
    app = FastAPI(title="blendgate", summary="OpenAI-compatible LLM ensemble gateway",
                  lifespan=_lifespan(state, load_in_background), redirect_slashes=False)
    state.attach(app)
    _include_routers(app)
    _install_error_handlers(app)
    _install_middleware(app, state)
    return app


def _gateway_state(config: GatewayConfig, config_path: Path | None,
                   loading: EngineLoading) -> GatewayState:
    metrics = GatewayMetrics(
        config.served_model_ids(include_experiments=True), version=package_version(),
        members={m.id: member_labels(m) for m in config.models
                 if isinstance(m, EnsembleModelConfig)})
    state = GatewayState(
        config=config, config_path=config_path, loading=loading,
        drain=Drain(config.server.drain_grace_s), limits=RequestLimits.from_config(config),
        api_keys=APIKeys.of(read_api_keys(config.server)), metrics=metrics)
    metrics.registry.register(ExperimentCollector(lambda: state.experiments))
    return state


def _lifespan(
    state: GatewayState, load_in_background: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    loading = state.loading

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await loading.start()
        if not load_in_background and await loading.wait() == "failed":
            assert loading.error is not None
            raise loading.error
        try:
            yield
        finally:
            if state.experiments is not None:
                await state.experiments.aclose()
            await loading.aclose()

    return lifespan


def _include_routers(app: FastAPI) -> None:
    app.include_router(routes.public)
    app.include_router(routes.api)
    app.include_router(responses_router.router)  # POST /v1/responses
    app.include_router(ranking.router)  # PairRM as a service: POST /v1/rank, /v1/compare
    app.include_router(fusing.router)  # a fuser as a service: POST /v1/fuse (streamed)
    app.include_router(experiments.router)  # /v1/feedback, /v1/experiments, /admin/reload
    app.include_router(ui.router)  # /ui: dashboard and side-by-side playground
    document_bodies(app, {
        "/v1/chat/completions": ChatCompletionRequest,
        "/v1/completions": CompletionRequest,
        "/v1/responses": ResponsesRequest,
        "/v1/rank": ranking.RankRequest,
        "/v1/compare": ranking.CompareRequest,
        "/v1/rank/batch": ranking.RankBatchRequest,
        "/v1/fuse": fusing.FuseRequest,
        "/v1/feedback": experiments.FeedbackRequest,
    })


def _install_middleware(app: FastAPI, state: GatewayState) -> None:
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(AccessMiddleware, metrics=state.metrics,
                       enabled=state.config.server.access_log)
    cors_origins = state.config.server.cors_origins
    if cors_origins:  # outermost, so preflights and errors get the headers
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins,
                           allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)


# --------------------------------------------------------------------------- errors


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return error_response(exc)

    async def on_blend_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BlendError)
        error = from_blend_error(exc)
        logger.log(logging.WARNING if error.status >= 500 else logging.INFO,
                   "%s %s -> %d %s: %s", request.method, request.url.path, error.status,
                   type(exc).__name__, exc)
        return error_response(error)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = (f"Unknown request URL: {request.method} {request.url.path}."
                   if exc.status_code == 404 else str(exc.detail))
        return error_response(APIError(exc.status_code, message, headers=dict(exc.headers or {})))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        return error_response(APIError(400, str(first.get("msg"))))

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is listening; metrics see 499

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(BlendError, on_blend_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ClientDisconnected, on_disconnect)


class InternalErrorMiddleware:
    """Turns an unexpected exception into OpenAI's generic 500 and logs its stack.

    (Starlette's own ``Exception`` handler answers but then re-raises into the server.) Once a
    response has started nothing can be sent; streams report their own errors in-band.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await error_response(internal_error())(scope, receive, send)
