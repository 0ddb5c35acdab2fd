"""``/metrics`` of a replicated gateway: every replica's families in one exposition.

Under Ray Serve a scrape of ``/metrics`` reaches one gateway replica at random. That replica
asks every replica of its deployment for its own exposition (``collect``) and answers with
:func:`merge_expositions`: each sample gets a ``replica`` label, so per-replica series stay
apart and ``sum without (replica)`` gives the totals. A replica that does not answer within
the timeout is left out (and logged): metrics never fail the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

# replica id -> that replica's exposition (Prometheus text format)
Collect = Callable[[], Awaitable[Mapping[str, bytes]]]


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def merge_expositions(by_replica: Mapping[str, bytes]) -> bytes:
    """One exposition with every replica's samples, labelled ``replica``."""
    merged: dict[str, Metric] = {}
    for replica, text in sorted(by_replica.items()):
        for family in text_string_to_metric_families(text.decode("utf-8")):
            target = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                target.add_sample(sample.name, {"replica": replica, **sample.labels},
                                  sample.value, sample.timestamp, sample.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))  # type: ignore[arg-type]
    return generate_latest(registry)


class ReplicaMetricsMiddleware:
    """Answers ``GET /metrics`` with every replica's metrics (see the module docstring)."""

    def __init__(self, app: ASGIApp, collect: Collect) -> None:
        self.app = app
        self._collect = collect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/metrics" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        body = merge_expositions(await self._collect())
        await Response(body, media_type=CONTENT_TYPE_LATEST)(scope, receive, send)
