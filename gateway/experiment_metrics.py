"""Prometheus series for experiments, read from the runtime at scrape time.

The library keeps plain counters (``ExperimentCounters``, ``ShadowStats``, ``StoreStats``); this
collector turns them into ``blendgate_experiment_*`` and ``blendgate_store_*`` series in the
app's own registry, so the library needs no Prometheus and a scrape always sees current values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ensemble.experiments import ExperimentRuntime


class ExperimentCollector(Collector):
    def __init__(self, runtime: Callable[[], ExperimentRuntime | None]) -> None:
        self._runtime = runtime  # read lazily: the runtime starts with the app's lifespan

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime()
        if runtime is None:
            return
        counters = runtime.counters
        requests = CounterMetricFamily(
            "blendgate_experiment_requests", "Requests routed to each experiment arm.",
            labels=["experiment", "arm"])
        for (experiment, arm), count in counters.requests.items():
            requests.add_metric([experiment, arm], count)
        yield requests
        verdicts = CounterMetricFamily(
            "blendgate_experiment_verdicts", "Judge verdicts per arm, from the arm's side.",
            labels=["experiment", "arm", "outcome"])
        for (experiment, arm, outcome), count in counters.verdicts.items():
            verdicts.add_metric([experiment, arm, outcome], count)
        yield verdicts
        feedback = CounterMetricFamily(
            "blendgate_experiment_feedback", "Human votes per arm.", labels=["experiment", "arm"])
        for (experiment, arm), count in counters.feedback.items():
            feedback.add_metric([experiment, arm], count)
        yield feedback
        shadow = CounterMetricFamily(
            "blendgate_experiment_shadow", "Shadow runs by result (submitted, dropped when the "
            "queue was full, failed, completed).", labels=["experiment", "result"])
        for experiment, stats in runtime.shadow_stats().items():
            for result in ("submitted", "dropped", "failed", "completed"):
                shadow.add_metric([experiment, result], getattr(stats, result))
        yield shadow
        store = runtime.store
        if store is None:
            return
        events = CounterMetricFamily(
            "blendgate_store_events", "Experiment events by fate: written, dropped (queue "
            "full), lost (their batch failed to write).", labels=["result"])
        for result in ("written", "dropped", "lost"):
            events.add_metric([result], getattr(store.stats, result))
        yield events
        yield CounterMetricFamily("blendgate_store_failed_batches",
                                  "Batches the store failed to write.",
                                  value=store.stats.failed_batches)
        yield GaugeMetricFamily("blendgate_store_up", "1 when the last store write succeeded.",
                                value=1.0 if store.stats.healthy else 0.0)
        yield GaugeMetricFamily("blendgate_store_queue", "Events waiting to be written.",
                                value=store.queued())
