"""``blendgate eval --pool``: generate the candidate pool once, judge it once, score every
policy off it, and write ``pool.json`` and ``pool.html``.

Stages, each cached in the store and shown with a progress bar: the pool (``pool``), every
configured ranker's ranking of it (``pool_scoring.rank_pools``), each ensemble's fused answer
over its ranker's top-k (``pool.collect_fusions``), the judge's verdicts (``PoolJudge``), then
the policies (``policies``). An interrupted run resumes where it stopped; a finished one, run
again, asks no model anything.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ensemble.backends.base import Backend
from ensemble.backends.factory import build_backends
from ensemble.config import BlendgateConfig, EnsembleModelConfig, FuserConfig
from ensemble.experiments.evaluation import policies, report
from ensemble.experiments.evaluation.command import (
    EvalOptions,
    chosen_prompts,
    judge_config,
    open_store,
    progress_bar,
    tie_margin,
)
from ensemble.experiments.evaluation.datasets import Prompt
from ensemble.experiments.evaluation.offline import config_fingerprint
from ensemble.experiments.evaluation.pool import (
    Candidate,
    FuseJob,
    PoolMember,
    PoolPlan,
    Slots,
    backends_of,
    collect_fusions,
    collect_pool,
    ensemble_slots,
    full_slots,
    fuse_key,
    pool_ensembles,
    pool_members,
    refuse_member_judge,
    slot_indices,
)
from ensemble.experiments.evaluation.pool_adaptive import (
    AdaptivePlan,
    RankEntry,
    adaptive_pick,
    adaptive_plan,
    adaptive_rankings,
    is_adaptive,
)
from ensemble.experiments.evaluation.pool_scoring import (
    Judged,
    PoolJudge,
    PoolRanking,
    is_pointwise,
    rank_pools,
)
from ensemble.experiments.evaluation.pool_sweep import sweep_variants
from ensemble.experiments.judge import PairwiseJudge
from ensemble.experiments.store import ExperimentStore
from ensemble.fusers.base import Fuser
from ensemble.fusers.factory import build_fuser
from ensemble.rankers.factory import RankerCache
from ensemble.shared import SharedByConfig

logger = logging.getLogger(__name__)
DEFAULT_PROMPTS = "alpaca_eval"


@dataclass(frozen=True)
class _Models:
    backends: Mapping[str, Backend]
    rankers: RankerCache
    fusers: SharedByConfig[FuserConfig, Fuser]
    owns_backends: bool

    async def aclose(self) -> None:
        await self.fusers.aclose()
        await self.rankers.aclose()
        for backend in self.backends.values() if self.owns_backends else ():
            await backend.aclose()


async def run_pool(options: EvalOptions,
                   backends: Mapping[str, Backend] | None = None) -> dict[str, Any]:
    """``backends`` injects ready backends (tests, embedding); they are then not closed here."""
    config = options.config
    chosen = pool_ensembles(config, options.models)
    variants = sweep_variants(chosen, options.sweeps)
    ensembles = [*chosen, *variants]
    members = pool_members(ensembles)
    judge_cfg = judge_config(options)
    refuse_member_judge(config, getattr(judge_cfg, "backend", None), members)
    run_label, prompts = chosen_prompts(options, options.prompts or DEFAULT_PROMPTS)
    plan = PoolPlan(run_label, prompts, members, options.max_tokens, options.temperature,
                    options.concurrency, max(e.member_timeout_s for e in ensembles))
    started = time.perf_counter()
    store = await open_store(options)
    try:
        models = _models(config, backends)
        try:
            await _start(models.backends)
            judge = PoolJudge(PairwiseJudge(await models.rankers.get(judge_cfg),
                                            tie_margin(options)),
                              pointwise=is_pointwise(judge_cfg), store=store, run=run_label,
                              concurrency=options.concurrency,
                              fingerprint=config_fingerprint(config, judge_cfg,
                                                             backends_of(judge_cfg)))
            stages = await _stages(options, plan, ensembles, models, store, judge,
                                   shown_fused={e.id for e in chosen})
        finally:
            await models.aclose()
    finally:
        await store.aclose()
    result = _summarise(options, plan, stages, judge)
    result.update({"store": store.url, "wall_s": round(time.perf_counter() - started, 1)})
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "pool.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (options.out / "pool.html").write_text(report.render_pool(result), encoding="utf-8")
    return result


def _models(config: BlendgateConfig, backends: Mapping[str, Backend] | None) -> _Models:
    built = build_backends(config) if backends is None else backends
    rankers = RankerCache()
    rankers.bind_backends(built)
    return _Models(built, rankers, SharedByConfig(lambda cfg: build_fuser(cfg, built)),
                   owns_backends=backends is None)


async def _start(backends: Mapping[str, Backend]) -> None:
    """Load local models before anything is timed: a load is no part of a candidate's latency."""
    for backend in backends.values():
        start = getattr(backend, "start", None)
        if start is not None:
            await start()


@dataclass
class _Stages:
    pool: dict[str, list[Candidate]]
    rankings: dict[str, dict[str, PoolRanking]]  # policy -> prompt id -> its part's ranking
    slots: dict[str, Slots]  # ranked policy -> the part of the pool it ranks
    fused: dict[str, dict[str, Any]]  # policy -> {"ranker": policy, "answers": {prompt: answer}}
    judged: dict[str, Judged]  # prompt id -> verdicts (prompts the judge failed on are absent)
    costs: dict[str, Any]  # what each stage made, took from the store, and failed on
    fuse_policies: list[str]  # every ensemble's, even one whose every fusion failed
    adaptive: list[AdaptivePlan]

    def policy_names(self, labels: Sequence[str]) -> list[str]:
        return [*(policies.member_policy(label) for label in labels), policies.RANDOM,
                *self.rankings, policies.ORACLE, *self.fuse_policies,
                *(plan.policy for plan in self.adaptive)]


async def _stages(options: EvalOptions, plan: PoolPlan, ensembles: Sequence[EnsembleModelConfig],
                  models: _Models, store: ExperimentStore, judge: PoolJudge,
                  shown_fused: set[str]) -> _Stages:
    """``shown_fused``: the ensembles whose fused policy is a row (a sweep's variants fuse
    exactly as their base does, so only their adaptive policy is one)."""
    config = options.config
    clock = [time.perf_counter()]  # each stage's end: its wall time, to plan longer runs
    total = sum(m.cfg.samples for m in plan.members) * len(plan.prompts)
    with progress_bar(options, total, "pool") as bar:
        pool, made = await collect_pool(config, models.backends, store, plan, bar.update)
    clock.append(time.perf_counter())
    pools = {p.id: (p, [c.answer.text for c in pool[p.id]]) for p in plan.prompts
             if pool[p.id]}
    ranked = ranker_policies(ensembles, plan.members)
    rankings: dict[str, dict[str, PoolRanking]] = {}
    for policy, (cfg, slots) in ranked.items():
        ranker = await models.rankers.get(cfg)
        fingerprint = config_fingerprint(config, cfg, backends_of(cfg))
        parts = {pid: (prompt, [texts[i] for i in slot_indices(pool[pid], slots)])
                 for pid, (prompt, texts) in pools.items()}
        with progress_bar(options, len(parts), policy) as bar:
            rankings[policy] = await rank_pools(ranker, fingerprint, store, plan.run, parts,
                                                bar.update)
    clock.append(time.perf_counter())
    slots_of = {policy: slots for policy, (_, slots) in ranked.items()}
    jobs = await _fuse_jobs(plan, pool, ensembles, rankings, models)
    with progress_bar(options, len(jobs), "fusing") as bar:
        fusions = await collect_fusions(config, store, plan, jobs, bar.update)
    clock.append(time.perf_counter())
    fused: dict[str, dict[str, Any]] = {}
    for job in jobs:
        entry = fused.setdefault(job.policy, {
            "ranker": _ranker_of(job.policy, ensembles, plan.members), "answers": {}})
        answer = fusions.answers.get(fuse_key(config, job, plan))
        if answer is not None:  # else that fusion failed: the policy has no answer there
            entry["answers"][job.prompt.id] = answer
    judged, unjudged = await _judge(options, plan, pools, fused, judge)
    clock.append(time.perf_counter())
    costs = {"pool": _cost(made), "fusions": _cost(fusions), "judge_calls": judge.judged,
             "prompts_unjudged": unjudged,
             "stage_s": {stage: round(end - begin, 1) for stage, begin, end in zip(
                 ("pool", "ranking", "fusing", "judging"), clock[:-1], clock[1:], strict=True)}}
    return _Stages(pool, rankings, slots_of, fused, judged, costs,
                   [policies.fuse_policy(e.id) for e in ensembles if e.id in shown_fused],
                   _adaptive_plans(ensembles, plan.members, ranked))


def ranker_policies(ensembles: Sequence[EnsembleModelConfig],
                    members: Sequence[PoolMember]) -> dict[str, RankEntry]:
    """One ranked policy per distinct (ranker config, part of the pool) of the ensembles:
    ``rank:<type>`` when it ranks the whole pool, ``rank:<type>@<ensemble>`` when that
    ensemble has only part of it (``#2``... when two such share a name); then the adaptive
    policies' own: ``rank:<type>@<ensemble>:stage<i>`` for a cascade stage's part (its
    ranker's, and the similarity ranker's when agreement needs one)."""
    whole = full_slots(members)
    found: dict[str, RankEntry] = {}
    wanted = [("", e.id, (e.ranker, ensemble_slots(e, members))) for e in ensembles]
    wanted += [(suffix, e.id, entry) for e in ensembles if is_adaptive(e)
               for suffix, entry in adaptive_rankings(e, members)]
    for suffix, ensemble_id, entry in wanted:
        if entry in found.values():
            continue
        where = f"@{ensemble_id}" + (f":{suffix}" if suffix else "")
        name = f"rank:{entry[0].type}" + ("" if entry[1] == whole and not suffix else where)
        count = sum(1 for existing in found if existing.split("#")[0] == name)
        found[name if count == 0 else f"{name}#{count + 1}"] = entry
    return found


def _policy_of(entry: RankEntry, ranked: Mapping[str, RankEntry]) -> str:
    return next(name for name, found in ranked.items() if found == entry)


def _ranker_of(policy: str, ensembles: Sequence[EnsembleModelConfig],
               members: Sequence[PoolMember]) -> str:
    ensemble = next(e for e in ensembles if policies.fuse_policy(e.id) == policy)
    entry = (ensemble.ranker, ensemble_slots(ensemble, members))
    return _policy_of(entry, ranker_policies(ensembles, members))


def _adaptive_plans(ensembles: Sequence[EnsembleModelConfig], members: Sequence[PoolMember],
                    ranked: Mapping[str, RankEntry]) -> list[AdaptivePlan]:
    return [adaptive_plan(e, members, lambda entry: _policy_of(entry, ranked),
                          policies.fuse_policy(e.id)) for e in ensembles if is_adaptive(e)]


async def _fuse_jobs(plan: PoolPlan, pool: Mapping[str, Sequence[Candidate]],
                     ensembles: Sequence[EnsembleModelConfig],
                     rankings: Mapping[str, Mapping[str, PoolRanking]],
                     models: _Models) -> list[FuseJob]:
    """One job per ensemble and ranked prompt: its fuser over its ranker's top-k of its part
    of the pool."""
    jobs = []
    for ensemble in ensembles:
        policy = policies.fuse_policy(ensemble.id)
        fuser = await models.fusers.get(ensemble.fuser)
        ranked = rankings[_ranker_of(policy, ensembles, plan.members)]
        slots = ensemble_slots(ensemble, plan.members)
        for prompt in plan.prompts:
            if prompt.id not in ranked:
                continue
            part = [pool[prompt.id][i].answer.text for i in slot_indices(pool[prompt.id], slots)]
            order = policies.ranked_order(ranked[prompt.id])[: ensemble.top_k]
            jobs.append(FuseJob(policy, prompt, ensemble.fuser, fuser,
                                tuple(part[i] for i in order)))
    return jobs


async def _judge(options: EvalOptions, plan: PoolPlan,
                 pools: Mapping[str, tuple[Prompt, list[str]]], fused: Mapping[str, Any],
                 judge: PoolJudge) -> tuple[dict[str, Judged], int]:
    """The judge's verdicts per prompt; a prompt the judge fails on is left out and counted."""
    judged: dict[str, Judged] = {}
    with progress_bar(options, len(pools), "judging") as bar:
        for prompt_id, (prompt, texts) in pools.items():
            extra = [e["answers"][prompt_id].text for e in fused.values()
                     if prompt_id in e["answers"]]
            try:
                judged[prompt_id] = await judge.judge_prompt(prompt, texts, extra)
            except Exception as exc:  # noqa: BLE001 - that prompt goes unscored; the run goes on
                logger.warning("the judge failed on prompt %s (left out): %s: %s", prompt_id,
                               type(exc).__name__, exc)
            bar.update(1)
    await judge.flush()
    return judged, len(pools) - len(judged)


def _cost(generated: Any) -> dict[str, Any]:
    return {"generated": generated.generated, "cached": generated.cached,
            "errors": generated.errors}


def _summarise(options: EvalOptions, plan: PoolPlan, stages: _Stages,
               judge: PoolJudge) -> dict[str, Any]:
    """The JSON result: one row per policy, and every prompt's picks."""
    labels = [m.label for m in plan.members]
    picks = _picks(options, plan, stages, labels)
    judged = stages.judged
    best = policies.best_member(labels, picks, judged)
    baseline = policies.member_policy(best)
    names = stages.policy_names(labels)
    margin = tie_margin(options)
    rows = [policies.summarise_policy(name, baseline, picks, judged, margin, options.seed)
            for name in names]
    prompts = {p.id: p for p in plan.prompts}
    return {
        "object": "eval.pool", "run": plan.run, "split": options.split, "seed": options.seed,
        "prompts_total": len(plan.prompts), "prompts_scored": len(picks),
        "members": {m.label: m.cfg.samples for m in plan.members}, "best_member": best,
        "baseline": baseline,
        "judge": {"name": judge.judge.name, "pointwise": judge.pointwise, "tie_margin": margin},
        "settings": {"max_tokens": plan.max_tokens, "temperature": plan.temperature,
                     "concurrency": plan.concurrency},
        "win_rate": "(wins + ties/2) / n against the best member; paired bootstrap 95% "
                    "interval over prompts (percentile, 10000 resamples, seeded)",
        "costs": stages.costs, "policies": rows,
        "prompts": [{"id": pid, "category": prompts[pid].category, "prompt": prompts[pid].text,
                     "picks": {name: {**{k: v for k, v in asdict(pick).items() if v is not None},
                                      "judge_score": judged[pid].scores[pick.text]}
                               for name, pick in mine.items()}}
                    for pid, mine in picks.items()],
    }


def _picks(options: EvalOptions, plan: PoolPlan, stages: _Stages,
           labels: Sequence[str]) -> dict[str, dict[str, policies.Pick]]:
    """Prompt id -> policy -> pick, over the scored prompts: judged, with every member's
    first sample."""
    picks = {}
    for prompt in plan.prompts:
        pool = stages.pool[prompt.id]
        firsts = {c.member for c in pool if c.sample == 0}
        if prompt.id not in stages.judged or not firsts.issuperset(labels):
            continue
        rankings = {policy: policies.PartRanking(
                        [pool[i] for i in slot_indices(pool, stages.slots[policy])],
                        ranked[prompt.id])
                    for policy, ranked in stages.rankings.items() if prompt.id in ranked}
        mine = policies.selection_picks(prompt.id, pool, rankings, stages.judged[prompt.id],
                                        options.seed)
        for policy, entry in stages.fused.items():
            answer = entry["answers"].get(prompt.id)
            if answer is not None:
                mine[policy] = policies.fused_pick(rankings[entry["ranker"]], answer)
        for adaptive in stages.adaptive:
            pick = adaptive_pick(adaptive, rankings, mine.get(adaptive.fuse))
            if pick is not None:
                mine[adaptive.policy] = pick
        picks[prompt.id] = mine
    return picks


def pool_lines(result: dict[str, Any]) -> list[str]:
    """What the command prints at the end of a pool run: one line per policy."""
    lines = [(f"{result['prompts_scored']} prompts scored; win rate against "
              f"{result['baseline']} (paired bootstrap 95%)")]
    for r in result["policies"]:
        if r["win_rate"] is None:
            lines.append(f"{r['policy']}: no verdicts")
            continue
        latency = "-" if r["latency_p50_s"] is None else f"{r['latency_p50_s']:.2f}s"
        tokens = "-" if r["completion_tokens_mean"] is None else \
            f"{r['completion_tokens_mean']:.0f}"
        lines.append(f"{r['policy']}: {100 * r['win_rate']:.1f}% [{100 * r['low']:.1f}, "
                     f"{100 * r['high']:.1f}], judge {r['judge_score_mean']}, tokens "
                     f"{tokens}, p50 {latency} (W/T/L {r['wins']}/{r['ties']}/{r['losses']})")
    stages = ", ".join(f"{stage} {s:g}s" for stage, s in result["costs"]["stage_s"].items())
    lines.append(f"wall time: {stages}; {result['costs']['judge_calls']} new verdicts")
    return lines
