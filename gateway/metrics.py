"""Prometheus metrics, in a registry owned by one app (never the process-global default).

Request counts and latency are observed by ``gateway.access.AccessMiddleware`` at the ASGI
level, so every outcome counts (401, 413, validation errors, streams that fail or are cut
off), and so is the in-flight gauge. Per-member latency and failures, the rank / fuse stage
times, tokens and time to first token are taken from the engine's results when a request
finishes. The registry also holds the process metrics (CPU, memory, file descriptors, GC,
Python version) and ``blendgate_build_info``.

Series that exist from the start, at 0 (so ``rate()`` and alerts work before the first
event): requests in flight, tokens per served model, and each ensemble member's failures for
each ``MEMBER_FAILURE_TYPES`` entry.

No ``*_created`` series: ``exposition`` leaves them out (a view over the registry) rather than
calling prometheus_client's ``disable_created_metrics()``, which flips a process-wide flag.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

from ensemble import QUORUM_CUT
from ensemble.errors import (
    BackendConnectError,
    BackendProtocolError,
    BackendStatusError,
    BackendTimeout,
    OverloadedError,
)
from ensemble.types import BlendReport, Usage

# Seconds: from a cached pass-through reply to a slow CPU ensemble.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
UNKNOWN = "_unknown"
STATE_MODEL = "blend_model"  # request.state key: the served model the request was for
STATE_STATUS = "blend_status"  # request.state key: status of an error sent inside a 200 stream
# The ways a member call usually fails (``MemberFailure.error_type``), zero-initialised.
MEMBER_FAILURE_TYPES = (
    BackendTimeout.__name__, BackendConnectError.__name__, BackendStatusError.__name__,
    BackendProtocolError.__name__, OverloadedError.__name__, QUORUM_CUT,
)


class GatewayMetrics:
    def __init__(
        self,
        served_models: Collection[str],
        *,
        members: Mapping[str, Sequence[str]] | None = None,
        version: str = "unknown",
    ) -> None:
        """``members``: each ensemble's member labels, whose failure series start at 0."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._served = frozenset(served_models)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        Info("blendgate_build", "The running blendgate.",
             registry=self.registry).info({"version": version})
        self.requests = Counter(
            "blendgate_requests", "HTTP requests by endpoint, model and status.",
            ["endpoint", "model", "status"], registry=self.registry,
        )
        self.request_latency = Histogram(
            "blendgate_request_duration_seconds", "Time from request to last byte sent.",
            ["endpoint", "model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "blendgate_requests_in_flight", "API requests being answered now.",
            registry=self.registry,
        )
        self.first_token = Histogram(
            "blendgate_time_to_first_token_seconds",
            "Streams: time from the request to the first content token sent.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "blendgate_prompt_tokens", "Prompt tokens of answered requests (ensembles: every "
            "member call and the fuser's).", ["model"], registry=self.registry,
        )
        self.completion_tokens = Counter(
            "blendgate_completion_tokens", "Completion tokens of answered requests (ensembles: "
            "every member's and the fuser's).", ["model"], registry=self.registry,
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
        for model in self._served:
            self.prompt_tokens.labels(model)
            self.completion_tokens.labels(model)
        for model, labels in (members or {}).items():
            for member in labels:
                for error_type in MEMBER_FAILURE_TYPES:
                    self.member_failures.labels(self.model_label(model), member, error_type)

    def model_label(self, model: str | None) -> str:
        """Served ids only: a client must not be able to create label values at will."""
        return model if model in self._served else UNKNOWN

    def observe_request(self, endpoint: str, model: str | None, status: int, seconds: float) -> None:
        label = self.model_label(model)
        self.requests.labels(endpoint, label, str(status)).inc()
        self.request_latency.labels(endpoint, label).observe(seconds)

    def observe_usage(self, model: str, usage: Usage) -> None:
        label = self.model_label(model)
        self.prompt_tokens.labels(label).inc(usage.prompt_tokens)
        self.completion_tokens.labels(label).inc(usage.completion_tokens)

    def observe_first_token(self, model: str, seconds: float) -> None:
        self.first_token.labels(self.model_label(model)).observe(seconds)

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
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated:
    """The registry's metrics without their ``*_created`` samples (start times that double the
    series count and that Prometheus' text format turns into gauges of their own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric
