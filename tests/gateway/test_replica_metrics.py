"""``merge_expositions``: every replica's families once, each sample labelled ``replica``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics
from gateway.replica_metrics import merge_expositions


def _replica(requests: int) -> bytes:
    metrics = GatewayMetrics(["blend"])
    for _ in range(requests):
        metrics.requests.labels("/v1/chat/completions", "blend", "200").inc()
        metrics.request_latency.labels("/v1/chat/completions", "blend").observe(0.1)
    return metrics.exposition()


def test_samples_keep_their_replica_and_families_appear_once() -> None:
    merged = merge_expositions({"r1": _replica(2), "r2": _replica(5)}).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    counts = {s.labels["replica"]: s.value for s in families["blendgate_requests"].samples
              if s.name == "blendgate_requests_total"}
    assert counts == {"r1": 2.0, "r2": 5.0}
    assert merged.count("# TYPE blendgate_requests_total counter") == 1
    # histograms keep their buckets per replica
    buckets = [s for s in families["blendgate_request_duration_seconds"].samples
               if s.name.endswith("_bucket")]
    assert {s.labels["replica"] for s in buckets} == {"r1", "r2"}
