"""The candidate pool of ``blendgate eval --pool``: every member's samples for every prompt,
generated once and kept in the store, and the fused answers of each ensemble's fuser.

Each sample is its own backend call (``n`` = 1), so every candidate has its own latency and
completion tokens. At most ``concurrency`` calls run at once: with the default 1 each timing is
the model's time alone, and the latency of a policy that needs several candidates (the slowest
of them) is that of a fan-out whose members do not slow each other down (separate GPUs or
OpenAI backends). A candidate's cache key is its member's config (without ``samples``: sample i
is the same draw whatever the count), its backend's config, the sample index, the prompt and
the run's sampling settings: a second run generates nothing, a run with more samples or prompts
only what is new. A fused answer's key is its fuser's config and the texts it fused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ensemble.backends.base import Backend
from ensemble.builder import member_labels
from ensemble.concurrency import closing
from ensemble.config import BlendgateConfig, EnsembleModelConfig, FuserConfig, MemberConfig
from ensemble.errors import ConfigError
from ensemble.experiments.evaluation.datasets import Prompt
from ensemble.experiments.evaluation.offline import config_fingerprint, content_key
from ensemble.experiments.events import EvalAnswer
from ensemble.experiments.store import ExperimentStore
from ensemble.fusers.base import Fuser
from ensemble.types import ChatMessage, SamplingParams, Usage

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PoolMember:
    label: str  # as the ensemble's reports name it (``member_labels``)
    cfg: MemberConfig


@dataclass(frozen=True)
class PoolPlan:
    run: str
    prompts: Sequence[Prompt]
    members: Sequence[PoolMember]
    max_tokens: int | None = None
    temperature: float | None = None
    concurrency: int = 1
    member_timeout_s: float = 600.0

    def params(self) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature)


@dataclass(frozen=True)
class Candidate:
    member: str
    sample: int
    answer: EvalAnswer  # text, latency_s, completion_tokens


@dataclass
class Generated:
    """What a generation stage produced: answers by key, and what it cost."""

    answers: dict[str, EvalAnswer] = field(default_factory=dict)
    generated: int = 0
    cached: int = 0
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # who -> reason -> count

    def fail(self, who: str, exc: BaseException) -> None:
        reasons = self.errors.setdefault(who, {})
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        reasons[reason] = reasons.get(reason, 0) + 1


def pool_ensembles(config: BlendgateConfig, chosen: Sequence[str]) -> list[EnsembleModelConfig]:
    """The ensembles whose policies a pool run scores (``--models``; default: all). Their
    members need not be the same: the pool is the union of them (``pool_members``), and each
    ensemble's policies see only its own part of it (``Slots``)."""
    ensembles = [m for m in config.models if isinstance(m, EnsembleModelConfig)]
    if chosen:
        unknown = [c for c in chosen if c not in {e.id for e in ensembles}]
        if unknown:
            raise ConfigError(f"--models: {unknown} are not ensembles of the config; its "
                              f"ensembles: {[e.id for e in ensembles]}")
        ensembles = [e for e in ensembles if e.id in chosen]
    if not ensembles:
        raise ConfigError("--pool needs an ensemble in the config")
    return ensembles


# An ensemble's part of the pool: (pool member label, how many of its samples), in member order.
Slots = tuple[tuple[str, int], ...]


def _draw(member: MemberConfig) -> str:
    """What makes two ensembles' members the same source of samples: everything but the count."""
    return repr(sorted(member.model_copy(update={"samples": 1}).model_dump().items()))


def pool_members(ensembles: Sequence[EnsembleModelConfig]) -> list[PoolMember]:
    """The union of the ensembles' members, their cascade stages' included: one pool member
    per distinct member config (apart from ``samples``), with the most samples any part (an
    ensemble's members, a cascade stage's) asks of it, a config listed twice in a part asking
    the sum. It keeps the first ensemble's label; a label already taken by another config
    gets ``@<ensemble id>``."""
    found: dict[str, PoolMember] = {}
    for ensemble in ensembles:
        for part in _parts(ensemble):
            asked: dict[str, int] = {}
            for label, cfg in part:
                draw = _draw(cfg)
                asked[draw] = asked.get(draw, 0) + cfg.samples
                want = cfg.model_copy(update={"samples": asked[draw]})
                if draw in found:
                    if want.samples > found[draw].cfg.samples:
                        found[draw] = PoolMember(found[draw].label, want)
                    continue
                taken = {m.label for m in found.values()}
                found[draw] = PoolMember(
                    label if label not in taken else f"{label}@{ensemble.id}", want)
    return list(found.values())


def _parts(ensemble: EnsembleModelConfig) -> list[list[tuple[str, MemberConfig]]]:
    """The ensemble's members, then each cascade stage's (``adaptive:<ensemble>`` draws its
    stages from the pool too), each member with its label."""
    parts = [list(zip(member_labels(ensemble), ensemble.members, strict=True))]
    for stage in ensemble.cascade:
        labels = member_labels(ensemble.model_copy(update={"members": stage.members}))
        parts.append(list(zip(labels, stage.members, strict=True)))
    return parts


def ensemble_slots(ensemble: EnsembleModelConfig, members: Sequence[PoolMember]) -> Slots:
    return member_slots(ensemble.members, members)


def member_slots(cfgs: Sequence[MemberConfig], members: Sequence[PoolMember]) -> Slots:
    """The part of the pool that ``cfgs`` (an ensemble's or a cascade stage's members) draw."""
    by_draw = {_draw(m.cfg): m.label for m in members}
    return tuple((by_draw[_draw(cfg)], cfg.samples) for cfg in cfgs)


def full_slots(members: Sequence[PoolMember]) -> Slots:
    return tuple((m.label, m.cfg.samples) for m in members)


def slot_indices(pool: Sequence[Candidate], slots: Slots) -> list[int]:
    """The pool positions of a part's candidates in the part's member order, each member's
    samples in order: the order the engine ranks them in (a tie keeps it). A member listed
    twice takes its next samples."""
    taken: dict[str, int] = {}
    found = []
    for label, count in slots:
        first = taken.get(label, 0)
        taken[label] = first + count
        found += [i for i, c in enumerate(pool)
                  if c.member == label and first <= c.sample < first + count]
    return found


def refuse_member_judge(config: BlendgateConfig, judge_backend: str | None,
                        members: Sequence[PoolMember]) -> None:
    """A judge that is one of the members would grade its own answers: refused. Two backend
    entries are the same model when they name the same model at the same place."""
    if judge_backend is None:
        return
    judge = config.backends.get(judge_backend)
    for member in members:
        backend = config.backends.get(member.cfg.backend)
        same = member.cfg.backend == judge_backend or (
            judge is not None and backend is not None and _identity(judge) == _identity(backend))
        if same:
            raise ConfigError(
                f"the judge (backend {judge_backend!r}) is the ensemble's member "
                f"{member.label!r}: it would grade its own answers. Judge with a model that is "
                "no member (--judge, or rank_service in the config)")


def _identity(backend: object) -> tuple[object, ...]:
    return (getattr(backend, "kind", None), str(getattr(backend, "model", None)),
            str(getattr(backend, "base_url", None)))


def candidate_key(config: BlendgateConfig, member: MemberConfig, sample: int, prompt: Prompt,
                  plan: PoolPlan) -> str:
    one = member.model_copy(update={"samples": 1})  # sample i does not depend on the count
    data = [config_fingerprint(config, one, [member.backend]), sample, prompt.text,
            plan.max_tokens, plan.temperature]
    return content_key(*data)


async def collect_pool(config: BlendgateConfig, backends: Mapping[str, Backend],
                       store: ExperimentStore, plan: PoolPlan,
                       progress: Progress) -> tuple[dict[str, list[Candidate]], Generated]:
    """Every prompt's candidates (member order, then sample order), from the store or made now;
    a failed call is counted and leaves its candidate out."""
    slots = [(m, i, p, candidate_key(config, m.cfg, i, p, plan))
             for p in plan.prompts for m in plan.members for i in range(m.cfg.samples)]
    done = await _cached(store, [key for *_, key in slots], progress)
    limit = asyncio.Semaphore(plan.concurrency)

    async def make(member: PoolMember, sample: int, prompt: Prompt, key: str) -> None:
        params = plan.params().merged(member.cfg.params)
        async with limit, asyncio.timeout(plan.member_timeout_s):
            await _generate(done, store, EvalAnswer(key, plan.run, member.label, prompt.id, "",
                                                    0.0, 0, 0),
                            _first(backends[member.cfg.backend], prompt.messages(), params))
        progress(1)

    await _gather_counted(done, [(m.label, make(m, i, p, k)) for m, i, p, k in slots
                                 if k not in done.answers], progress)
    await store.flush()
    pool = {p.id: [Candidate(m.label, i, done.answers[k]) for m, i, q, k in slots
                   if q.id == p.id and k in done.answers] for p in plan.prompts}
    return pool, done


@dataclass(frozen=True)
class FuseJob:
    """One fused answer to make: ``fuser`` over ``top`` (the ranker's best texts)."""

    policy: str
    prompt: Prompt
    fuser_cfg: FuserConfig
    fuser: Fuser
    top: tuple[str, ...]


def backends_of(cfg: object) -> list[str]:
    """The backends a ranker or fuser config calls, its fallbacks' included."""
    found = []
    while cfg is not None:
        backend = getattr(cfg, "backend", None)
        if isinstance(backend, str):
            found.append(backend)
        cfg = getattr(cfg, "fallback", None)
    return found


def fuse_key(config: BlendgateConfig, job: FuseJob, plan: PoolPlan) -> str:
    fingerprint = config_fingerprint(config, job.fuser_cfg, backends_of(job.fuser_cfg))
    return content_key(fingerprint, job.prompt.text, list(job.top), plan.max_tokens,
                       plan.temperature)


async def collect_fusions(config: BlendgateConfig, store: ExperimentStore, plan: PoolPlan,
                          jobs: Sequence[FuseJob], progress: Progress) -> Generated:
    """One fused answer per job, from the store or made now; a failure is counted."""
    keys = [fuse_key(config, job, plan) for job in jobs]
    done = await _cached(store, keys, progress)
    limit = asyncio.Semaphore(plan.concurrency)

    async def make(job: FuseJob, key: str) -> None:
        async with limit, asyncio.timeout(plan.member_timeout_s):
            await _generate(done, store, EvalAnswer(key, plan.run, job.policy, job.prompt.id, "",
                                                    0.0, 0, 0),
                            _fused(job.fuser, job.prompt.messages(), job.top, plan.params()))
        progress(1)

    # ensembles with the same fuser over the same top-k share one fused answer: made once
    first_job = dict(zip(keys, jobs, strict=True))
    progress(len(jobs) - len(first_job))  # the repeats; the cached were counted
    await _gather_counted(done, [(job.policy, make(job, key)) for key, job in first_job.items()
                                 if key not in done.answers], progress)
    await store.flush()
    return done


async def _cached(store: ExperimentStore, keys: Sequence[str], progress: Progress) -> Generated:
    done = Generated(answers=await store.eval_answers(keys))
    done.cached = len(done.answers)
    progress(done.cached)
    return done


async def _generate(done: Generated, store: ExperimentStore, blank: EvalAnswer,
                    call: Awaitable[tuple[str, Usage]]) -> None:
    """Run ``call``, time it, keep its answer (written within the store's flush interval, so an
    interruption loses little)."""
    started = time.perf_counter()
    text, usage = await call
    answer = EvalAnswer(blank.key, blank.run, blank.model, blank.prompt_id, text,
                        time.perf_counter() - started, usage.prompt_tokens,
                        usage.completion_tokens)
    done.answers[answer.key] = answer
    done.generated += 1
    store.submit(answer)


async def _gather_counted(done: Generated, calls: Sequence[tuple[str, Awaitable[None]]],
                          progress: Progress) -> None:
    async def counted(who: str, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:  # noqa: BLE001 - counted with its reason; the run goes on
            done.fail(who, exc)
            progress(1)

    await asyncio.gather(*(counted(who, call) for who, call in calls))


async def _first(backend: Backend, messages: Sequence[ChatMessage],
                 params: SamplingParams) -> tuple[str, Usage]:
    completion = (await backend.complete(messages, params, 1))[0]
    return completion.text, completion.usage or Usage()


async def _fused(fuser: Fuser, messages: Sequence[ChatMessage], top: Sequence[str],
                 params: SamplingParams) -> tuple[str, Usage]:
    stream = await fuser.fuse(messages, top, params)
    parts: list[str] = []
    usage = Usage()
    async with closing(stream.deltas) as deltas:  # a timeout stops the upstream call too
        async for delta in deltas:
            parts.append(delta.text)
            usage += delta.usage or Usage()
    return "".join(parts), usage
