"""``ExperimentRuntime``: what the gateway holds to run experiments.

* ``assign``: the arm for a request to an experiment id (``split.choose_arm``).
* ``record``: a finished completion -> the store; and, for a sampled request served by another
  arm than the shadow arm, a shadow job: run the shadow arm, judge it against the served
  answer, store both. Never raises, never waits.
* ``feedback``: a human vote on a recorded completion.
* ``experiment_stats``: the numbers behind ``/v1/experiments``.
* ``reload``: swap in new experiment settings (weights, shadow, judge). Requests already
  assigned keep their arm; the swap is one assignment of an immutable mapping.

The runtime owns its shadow runners and the store; its judges are the engine's rankers.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol

from ensemble.config import BlendgateConfig, ExperimentConfig, RankerConfig, ShadowConfig
from ensemble.errors import RequestError
from ensemble.experiments.events import CompletionEvent, FeedbackEvent, VerdictEvent
from ensemble.experiments.judge import PairwiseJudge
from ensemble.experiments.shadow import ShadowRunner, ShadowStats
from ensemble.experiments.split import choose_arm
from ensemble.experiments.stats import WinRate, percentile, win_rate
from ensemble.experiments.store import ExperimentStore, FeedbackTally
from ensemble.experiments.store.store import StoreUnavailable
from ensemble.rankers.base import Ranker
from ensemble.rankers.factory import RankerCache
from ensemble.types import BlendReport, BlendRequest, BlendResult, Usage

logger = logging.getLogger(__name__)


class Completer(Protocol):
    """What shadow runs need of the engine."""

    async def complete(self, request: BlendRequest) -> BlendResult: ...


RankerSource = Callable[[RankerConfig], Awaitable[Ranker]]


class UnknownCompletionError(RequestError):
    """Feedback for a completion id the store never saw (HTTP 404)."""


class StoreDisabledError(RequestError):
    """Feedback or statistics asked of a gateway that runs no store."""


@dataclass(frozen=True)
class Assignment:
    experiment: ExperimentConfig
    arm: str
    model: str
    user_hash: str | None


@dataclass(frozen=True)
class Served:
    """A finished request, as the runtime records it."""

    id: str
    request: BlendRequest  # as sent to the engine (model = the arm's model)
    text: str  # choice 0, the answer a shadow run is judged against
    usage: Usage
    latency_s: float
    report: BlendReport | None
    assignment: Assignment | None = None
    status: str = "ok"


@dataclass(frozen=True)
class _ShadowJob:
    served: Served
    assignment: Assignment
    shadow: ShadowConfig


@dataclass
class ExperimentCounters:
    """In-process counts behind ``/metrics`` (the store holds the durable ones)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (experiment, arm)
    verdicts: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # + outcome
    feedback: Counter[tuple[str, str]] = field(default_factory=Counter)
    judge_failures: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class ArmStats:
    name: str
    model: str
    weight: float
    requests: int
    shadow_requests: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    completion_tokens_per_answer: float | None
    prompt_tokens_per_answer: float | None
    win_rate: WinRate
    feedback_votes: int
    feedback_mean_score: float | None
    feedback_rate: float | None  # votes per served request


@dataclass(frozen=True)
class ExperimentStats:
    id: str
    arms: list[ArmStats]
    judge: str | None
    tie_margin: float
    alpha: float
    shadow_arm: str | None
    shadow: ShadowStats | None
    enough_evidence: bool  # some arm's confidence sequence excludes 1/2
    method: str = ("win rate = (wins + ties/2) / n; Wilson interval; enough_evidence from an "
                   "anytime-valid normal-mixture confidence sequence (Howard et al. 2021)")


class ExperimentRuntime:
    def __init__(self, engine: Completer, store: ExperimentStore | None) -> None:
        self._engine = engine
        self.store = store
        self._experiments: Mapping[str, ExperimentConfig] = MappingProxyType({})
        self._judges: dict[str, PairwiseJudge] = {}
        self._shadows: dict[str, tuple[ShadowConfig, ShadowRunner[_ShadowJob]]] = {}
        # Judges come from the engine's own ranker cache when it has one (shared models, and
        # the backends an llm_judge calls); else from a cache of the runtime's own.
        self._rankers = RankerCache()
        self._ranker_source: RankerSource = getattr(engine, "ranker", self._rankers.get)
        self.counters = ExperimentCounters()
        self._random = random.Random()

    @classmethod
    async def start(cls, config: BlendgateConfig, engine: Completer) -> ExperimentRuntime:
        store_cfg = config.store_config()
        store = await ExperimentStore.open(store_cfg) if store_cfg is not None else None
        runtime = cls(engine, store)
        await runtime.reload(config.experiments)
        return runtime

    async def aclose(self) -> None:
        for _, runner in self._shadows.values():
            await runner.aclose()
        self._shadows = {}
        await self._rankers.aclose()
        if self.store is not None:
            await self.store.aclose()

    # ------------------------------------------------------------------ configuration

    def experiments(self) -> list[ExperimentConfig]:
        return list(self._experiments.values())

    def experiment(self, model_id: str) -> ExperimentConfig | None:
        return self._experiments.get(model_id)

    async def reload(self, experiments: Sequence[ExperimentConfig]) -> None:
        """Load the judges the new settings need, then swap them in; shadow runners whose
        settings changed are replaced (the old ones finish the jobs they hold)."""
        judges: dict[str, PairwiseJudge] = {}
        for experiment in experiments:
            if experiment.judge is None:
                continue
            try:
                ranker = await self._ranker_source(experiment.judge)
            except Exception as exc:  # noqa: BLE001 - the experiment runs unjudged
                logger.error("experiment %s: judge %s failed to load: %s: %s", experiment.id,
                             experiment.judge.type, type(exc).__name__, exc)
                continue
            judges[experiment.id] = PairwiseJudge(ranker, experiment.tie_margin)
        shadows: dict[str, tuple[ShadowConfig, ShadowRunner[_ShadowJob]]] = {}
        retired: list[ShadowRunner[_ShadowJob]] = []
        for experiment in experiments:
            old = self._shadows.get(experiment.id)
            if experiment.shadow is None:
                continue
            if old is not None and old[0] == experiment.shadow:
                shadows[experiment.id] = old
                continue
            shadows[experiment.id] = (experiment.shadow, ShadowRunner(
                self._run_shadow, concurrency=experiment.shadow.max_concurrency,
                queue_size=experiment.shadow.queue_size, name=f"shadow-{experiment.id}"))
        for experiment_id, (_settings, runner) in self._shadows.items():
            if shadows.get(experiment_id, (None, None))[1] is not runner:
                retired.append(runner)
        self._judges = judges
        self._shadows = shadows
        self._experiments = MappingProxyType({e.id: e for e in experiments})
        for runner in retired:
            await runner.aclose(timeout_s=1.0)

    # ------------------------------------------------------------------ serving

    def assign(self, model_id: str, key: str | None) -> Assignment | None:
        """The arm that serves ``model_id`` (None: not an experiment) for the sticky ``key``
        (who asks; the gateway takes it from the request); no key draws an arm at random."""
        experiment = self._experiments.get(model_id)
        if experiment is None:
            return None
        arm = choose_arm(experiment, key)
        self.counters.requests[(experiment.id, arm.name)] += 1
        user_hash = hashlib.sha256(key.encode()).hexdigest()[:16] if key else None
        return Assignment(experiment, arm.name, arm.model, user_hash)

    def record(self, served: Served) -> None:
        """Store the completion; start a shadow run when one is due. Never raises."""
        try:
            if self.store is not None:
                self.store.submit(_completion_event(served, "served"))
            assignment = served.assignment
            if assignment is None or served.status != "ok":
                return
            entry = self._shadows.get(assignment.experiment.id)
            if entry is None:
                return
            shadow, runner = entry
            if assignment.arm == shadow.arm or self._random.random() >= shadow.sample_rate:
                return
            runner.submit(_ShadowJob(served, assignment, shadow))
        except Exception:  # recording must never fail an answer
            logger.exception("recording completion %s failed", served.id)

    async def _run_shadow(self, job: _ShadowJob) -> None:
        experiment = job.assignment.experiment
        model = next(a.model for a in experiment.arms if a.name == job.shadow.arm)
        request = replace(job.served.request, model=model, n=1, return_candidates=False)
        started = time.perf_counter()
        result = await self._engine.complete(request)
        shadow = Served(
            id=f"{job.served.id}:shadow", request=request, text=result.choices[0].text,
            usage=result.usage, latency_s=time.perf_counter() - started, report=result.report,
            assignment=replace(job.assignment, arm=job.shadow.arm, model=model),
        )
        if self.store is not None:
            self.store.submit(_completion_event(shadow, "shadow"))
        judge = self._judges.get(experiment.id)
        if judge is None:
            return
        try:
            verdict = await judge.judge(request.messages, job.served.text, shadow.text)
        except Exception:
            self.counters.judge_failures[experiment.id] += 1
            raise
        self.counters.verdicts[(experiment.id, job.shadow.arm, verdict.outcome)] += 1
        flipped = {"win": "loss", "loss": "win", "tie": "tie"}[verdict.outcome]
        self.counters.verdicts[(experiment.id, job.assignment.arm, flipped)] += 1
        if self.store is not None:
            self.store.submit(VerdictEvent(
                experiment=experiment.id, request_id=job.served.id, arm=job.shadow.arm,
                baseline_arm=job.assignment.arm, outcome=verdict.outcome,
                score=verdict.score_b, baseline_score=verdict.score_a, judge=judge.name))

    def shadow_stats(self) -> dict[str, ShadowStats]:
        return {eid: runner.stats for eid, (_, runner) in self._shadows.items()}

    async def drain_shadows(self) -> None:
        for _, runner in list(self._shadows.values()):
            await runner.drain()

    # ------------------------------------------------------------------ feedback

    async def feedback(self, completion_id: str, *, rating: int | None, thumbs: str | None,
                       comment: str | None) -> FeedbackEvent:
        """Record a vote; the caller has checked that exactly one of rating / thumbs is set."""
        store = self._require_store()
        ref = await store.completion(completion_id)
        if ref is None:
            raise UnknownCompletionError(
                f"No completion with id {completion_id!r} was recorded by this gateway.",
                param="id", code="completion_not_found")
        score = (rating - 1) / 4 if rating is not None else (1.0 if thumbs == "up" else 0.0)
        feedback = FeedbackEvent(
            id=f"fb-{uuid.uuid4().hex}", completion_id=ref.id, model=ref.model, score=score,
            experiment=ref.experiment, arm=ref.arm, rating=rating, thumbs=thumbs,
            comment=comment)
        store.submit(feedback)
        if ref.experiment is not None and ref.arm is not None:
            self.counters.feedback[(ref.experiment, ref.arm)] += 1
        return feedback

    def _require_store(self) -> ExperimentStore:
        if self.store is None:
            raise StoreDisabledError(
                "This gateway runs no experiment store (configure `store:` or `experiments:`).",
                code="store_disabled")
        return self.store

    # ------------------------------------------------------------------ statistics

    async def experiment_stats(self, experiment: ExperimentConfig) -> ExperimentStats:
        """Raises ``StoreUnavailable`` when the store cannot answer."""
        store = self._require_store()
        served = await store.completions(experiment.id, "served")
        shadowed = await store.completions(experiment.id, "shadow")
        feedback = {row.key: (row.votes, row.mean_score) for row in
                    await store.feedback_by("arm", experiment.id)}
        arms = []
        for arm in experiment.arms:
            rows = [r for r in [*served, *shadowed] if r.arm == arm.name]
            requests = sum(1 for r in served if r.arm == arm.name)
            outcomes = await store.verdict_sequence(experiment.id, arm.name)
            votes, mean = feedback.get(arm.name, (0, None))
            latencies = [r.latency_s for r in rows]
            arms.append(ArmStats(
                name=arm.name, model=arm.model, weight=arm.weight, requests=requests,
                shadow_requests=len(rows) - requests,
                latency_p50_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
                completion_tokens_per_answer=_mean([r.completion_tokens for r in rows]),
                prompt_tokens_per_answer=_mean([r.prompt_tokens for r in rows]),
                win_rate=win_rate(outcomes, experiment.alpha),
                feedback_votes=votes, feedback_mean_score=mean,
                feedback_rate=votes / requests if requests else None,
            ))
        judge = self._judges.get(experiment.id)
        shadow = self._shadows.get(experiment.id)
        return ExperimentStats(
            id=experiment.id, arms=arms, judge=judge.name if judge else None,
            tie_margin=experiment.tie_margin, alpha=experiment.alpha,
            shadow_arm=experiment.shadow.arm if experiment.shadow else None,
            shadow=shadow[1].stats if shadow else None,
            enough_evidence=any(a.win_rate.decided for a in arms),
        )

    async def model_feedback(self) -> list[FeedbackTally]:
        """Votes and mean score per model over every recorded completion, experiments or not."""
        return await self._require_store().feedback_by("model")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _completion_event(served: Served, role: str) -> CompletionEvent:
    assignment = served.assignment
    return CompletionEvent(
        id=served.id, model=served.request.model, role=role,  # type: ignore[arg-type]
        experiment=assignment.experiment.id if assignment else None,
        arm=assignment.arm if assignment else None,
        user_hash=assignment.user_hash if assignment else None,
        latency_s=served.latency_s, prompt_tokens=served.usage.prompt_tokens,
        completion_tokens=served.usage.completion_tokens,
        members=_members(served.report), status=served.status,
    )


def _members(report: BlendReport | None) -> dict[str, dict[str, float]]:
    """Per member: candidates that arrived, their mean latency, failures, and the tokens its
    upstream calls used; the fuser's tokens under ``fuser:<name>``."""
    if report is None:
        return {}
    members: dict[str, dict[str, float]] = {}

    def entry(name: str) -> dict[str, float]:
        return members.setdefault(name, {"candidates": 0, "latency_s": 0.0, "failures": 0,
                                         "prompt_tokens": 0, "completion_tokens": 0})

    for candidate in report.candidates:
        entry(candidate.member)["candidates"] += 1
        entry(candidate.member)["latency_s"] += candidate.latency_s
    for values in members.values():
        values["latency_s"] /= max(values["candidates"], 1)
    for failure in report.failures:
        entry(failure.member)["failures"] += 1
    for part in report.usage:
        name = part.name if part.stage == "member" else f"fuser:{part.name}"
        entry(name)["prompt_tokens"] += part.usage.prompt_tokens
        entry(name)["completion_tokens"] += part.usage.completion_tokens
    return members


__all__ = [
    "Assignment",
    "ExperimentRuntime",
    "Served",
    "StoreDisabledError",
    "StoreUnavailable",
    "UnknownCompletionError",
]
