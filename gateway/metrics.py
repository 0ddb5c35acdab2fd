"""Prometheus metrics, in a registry owned by one app (never the process-global default).

Request counts and latency are observed by ``MetricsMiddleware`` at the ASGI level, so every
outcome counts (401, 413, validation errors, streams that fail or are cut off). Per-member
latency and failures and the rank / fuse stage times are taken from the engine's
``BlendReport`` when a request finishes.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensemble.types import BlendReport

# Seconds: from a cached pass-through reply to a slow CPU ensemble.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
UNKNOWN = "_unknown"
STATE_MODEL = "blend_model"  # request.state key: the served model the request was for
STATE_STATUS = "blend_status"  # request.state key: status of an error sent inside a 200 stream


class GatewayMetrics:
    def __init__(self, served_models: Collection[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._served = frozenset(served_models)
        self.requests = Counter(
            "blendgate_requests", "HTTP requests by endpoint, model and status.",
            ["endpoint", "model", "status"], registry=self.registry,
        )
        self.request_latency = Histogram(
            "blendgate_request_duration_seconds", "Time from request to last byte sent.",
            ["endpoint", "model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.member_latency = Histogram(
            "blendgate_member_duration_seconds", "Latency of each member's answer.",
            ["model", "member"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.member_failures = Counter(
            "blendgate_member_failures", "Member calls that failed, by error type.",
            ["model", "member", "error_type"], registry=self.registry,
        )
        self.stage_latency = Histogram(
            "blendgate_stage_duration_seconds", "Time spent in each ensemble stage.",
            ["model", "stage"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )

    def model_label(self, model: str | None) -> str:
        """Served ids only: a client must not be able to create label values at will."""
        return model if model in self._served else UNKNOWN

    def observe_request(self, endpoint: str, model: str | None, status: int, seconds: float) -> None:
        label = self.model_label(model)
        self.requests.labels(endpoint, label, str(status)).inc()
        self.request_latency.labels(endpoint, label).observe(seconds)

    def observe_report(self, model: str, report: BlendReport | None) -> None:
        if report is None:
            return
        label = self.model_label(model)
        for candidate in report.candidates:
            self.member_latency.labels(label, candidate.member).observe(candidate.latency_s)
        for failure in report.failures:
            self.member_failures.labels(label, failure.member, failure.error_type).inc()
        timings = report.timings
        for stage, seconds in (
            ("fanout", timings.fanout_s), ("rank", timings.rank_s), ("fuse", timings.fuse_s)
        ):
            self.stage_latency.labels(label, stage).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts each request under ``prefix`` once it has been answered (or abandoned).

    The ``endpoint`` label is the matched route's path template, or ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, prefix: str = "/v1/") -> None:
        self.app = app
        self.metrics = metrics
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        state: dict[str, object] = scope.setdefault("state", {})
        started = time.perf_counter()
        status = 499  # nothing sent: the client went away first

        async def observe_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe_send)
        except Exception:
            status = 500
            raise
        finally:
            model = state.get(STATE_MODEL)
            endpoint = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(
                endpoint, model if isinstance(model, str) else None,
                int(state.get(STATE_STATUS, status)),  # type: ignore[call-overload]
                time.perf_counter() - started,
            )
