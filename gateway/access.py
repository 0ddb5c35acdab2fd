"""One access-log line and the request metrics per request, and the ``x-request-id`` header.

``AccessMiddleware`` wraps the whole app at the ASGI level, so every outcome is seen (401,
413, validation errors, streams that fail or are cut off). It takes the client's
``x-request-id`` when it is short and plain (``REQUEST_ID``), else makes one, and sends it back
on the response. When the response is finished it logs one line on the ``blendgate.access``
logger, as ``key=value`` pairs::

    request_id=4be0... method=POST route=/v1/chat/completions model=blend status=200
    duration_s=4.210 ttfb_s=3.902 stream=true candidates=4 failures=0 completion_id=chatcmpl-...

``ttfb_s`` (time to the first body byte) is there for streams; ``candidates`` / ``failures``
for ensembles; ``completion_id`` for chat completions; ``-`` where there is none. No prompt or
answer text is ever logged. ``/health`` and ``/metrics`` (probes, scrapes) log at DEBUG, the
API at INFO. Routes add what only they know through ``request.state`` (``STATE_*`` keys).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensemble.types import BlendReport, Usage
from gateway.metrics import STATE_MODEL, STATE_STATUS, GatewayMetrics

logger = logging.getLogger("blendgate.access")

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")  # what a client's id may be
STATE_REQUEST_ID = "request_id"  # request.state key: this request's id
STATE_COMPLETION_ID = "blend_completion_id"  # request.state key: the completion's id
STATE_COUNTS = "blend_counts"  # request.state key: (candidates, failures) of an ensemble
_QUIET_PATHS = frozenset({"/health", "/metrics"})
_PLAIN = re.compile(r"[A-Za-z0-9._:/@+=-]{1,128}")


def request_id(scope: Scope) -> str:
    """The client's ``x-request-id`` when it is plain enough to log and echo, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def _plain(value: str | None) -> str:
    """``value`` as is when it is plain, else quoted (client text must not forge log lines)."""
    if value is None:
        return "-"
    return value if _PLAIN.fullmatch(value) else json.dumps(value[:128])


def observe_answer(request: Request, metrics: GatewayMetrics, model: str, usage: Usage,
                   report: BlendReport | None) -> None:
    """Metrics of a finished answer, and its candidate / failure counts for the access log."""
    metrics.observe_report(model, report)
    metrics.observe_usage(model, usage)
    if report is not None:
        setattr(request.state, STATE_COUNTS, (len(report.candidates), len(report.failures)))


class AccessMiddleware:
    """Request id, in-flight gauge, request metrics (API routes) and the access log line."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, *, enabled: bool = True,
                 metrics_prefix: str = "/v1/") -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled  # the log line; metrics and the header are always on
        self.metrics_prefix = metrics_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, object] = scope.setdefault("state", {})
        rid = state[STATE_REQUEST_ID] = request_id(scope)
        counted = scope["path"].startswith(self.metrics_prefix)
        started = time.perf_counter()
        first_byte: float | None = None
        stream = False
        status = 499  # nothing sent: the client went away first

        async def observe_send(message: Message) -> None:
            nonlocal status, first_byte, stream
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = rid
                stream = headers.get("content-type", "").startswith("text/event-stream")
            elif first_byte is None and message.get("body"):
                first_byte = time.perf_counter()
            await send(message)

        if counted:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observe_send)
        except Exception:
            status = 500
            raise
        finally:
            duration = time.perf_counter() - started
            final = int(state.get(STATE_STATUS, status))  # type: ignore[call-overload]
            model = state.get(STATE_MODEL)
            model = model if isinstance(model, str) else None
            route = getattr(scope.get("route"), "path", None)  # the template, not the path
            if counted:
                self.metrics.in_flight.dec()
                self.metrics.observe_request(route or "unmatched", model, final, duration)
            if self.enabled:
                level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
                ttfb = first_byte - started if stream and first_byte is not None else None
                counts = state.get(STATE_COUNTS)
                candidates, failures = counts if isinstance(counts, tuple) else ("-", "-")
                logger.log(
                    level,
                    "request_id=%s method=%s route=%s model=%s status=%d duration_s=%.3f "
                    "ttfb_s=%s stream=%s candidates=%s failures=%s completion_id=%s",
                    rid, scope.get("method"), route or _plain(scope["path"]), _plain(model), final,
                    duration, f"{ttfb:.3f}" if ttfb is not None else "-",
                    str(stream).lower(), candidates, failures,
                    state.get(STATE_COMPLETION_ID) or "-",
                )
