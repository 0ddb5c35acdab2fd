"""``blendgate eval``, run from parsed options: build what the mode needs, run, write results.

Three modes:

* **A/B run** (``EvalOptions.prompts``): models and baselines answer the prompts through an
  in-process ``BlendEngine`` built from the config, the judge compares, and ``result.json`` plus
  ``report.html`` are written to the output directory.
* **Candidate pool** (``EvalOptions.pool``): each member's candidates generated once, judged
  once, and every selection and fusion policy scored off that pool (``pool_command``);
  ``pool.json`` and ``pool.html`` are written.
* **Judge agreement** (``EvalOptions.agreement``): the judge alone scores labelled pairs;
  ``agreement.json`` and ``agreement.md`` (the model card's table layout) are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from tqdm import tqdm

from ensemble.config import BlendgateConfig, RankerConfig, StoreConfig
from ensemble.errors import ConfigError
from ensemble.experiments.evaluation import agreement as agreement_mode
from ensemble.experiments.evaluation import datasets, offline, report
from ensemble.experiments.evaluation.datasets import LabelledPair, Prompt
from ensemble.experiments.evaluation.offline import config_fingerprint
from ensemble.experiments.evaluation.pool import backends_of
from ensemble.experiments.evaluation.pool_scoring import PoolJudge, is_pointwise
from ensemble.experiments.evaluation.pool_sweep import Sweep
from ensemble.experiments.judge import PairwiseJudge
from ensemble.experiments.store import ExperimentStore


@dataclass(frozen=True)
class EvalOptions:
    config: BlendgateConfig
    out: Path
    prompts: str | None = None
    agreement: Sequence[str] = ()
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    models: Sequence[str] = ()
    baselines: Sequence[str] = ()
    experiment: str | None = None
    judge: str | None = None  # a ranker config as YAML / JSON text
    tie_margin: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    concurrency: int = 1
    store_url: str | None = None
    data_dir: str | None = None
    progress: bool = True
    pool: bool = False
    split: str | None = None  # "dev" or "test": a seeded half of the prompt set (pool mode)
    sweeps: Sequence[Sweep] = ()  # pool mode: ensemble variants over one setting (pool_sweep)


def judge_config(options: EvalOptions) -> RankerConfig:
    """``--judge``, else the experiment's judge, else ``rank_service``, else the first
    ensemble's ranker."""
    if options.judge:
        try:
            return TypeAdapter(RankerConfig).validate_python(yaml.safe_load(options.judge))
        except (ValidationError, yaml.YAMLError) as exc:
            raise ConfigError(f"--judge: {exc}") from None
    config = options.config
    experiment = _experiment(options)
    if experiment is not None and experiment.judge is not None:
        return experiment.judge
    if config.rank_service is not None:
        return config.rank_service
    for model in config.models:
        ranker = getattr(model, "ranker", None)
        if ranker is not None:
            return ranker  # type: ignore[no-any-return]
    raise ConfigError("no judge: pass --judge '{type: pairrm, checkpoint: ...}'")


def _experiment(options: EvalOptions) -> Any:
    if options.experiment is None:
        return None
    for experiment in options.config.experiments:
        if experiment.id == options.experiment:
            return experiment
    raise ConfigError(f"--experiment: no experiment {options.experiment!r} in the config")


def tie_margin(options: EvalOptions) -> float:
    if options.tie_margin is not None:
        return options.tie_margin
    experiment = _experiment(options)
    return experiment.tie_margin if experiment is not None else 0.0


def plan_models(options: EvalOptions) -> tuple[list[str], list[str]]:
    """(models, baselines). An experiment's arms: the last (or ``--baseline``) is the baseline."""
    models, baselines = list(options.models), list(options.baselines)
    experiment = _experiment(options)
    if experiment is not None:
        arms = [arm.model for arm in experiment.arms]
        baselines = baselines or [arms[-1]]
        models = models or [m for m in arms if m not in baselines]
    if not models or not baselines:
        raise ConfigError("name the models and the baseline: --models blend --baseline smollm2 "
                          "(or --experiment ID)")
    served = set(options.config.served_model_ids())
    unknown = [m for m in [*models, *baselines] if m not in served]
    if unknown:
        raise ConfigError(f"unknown models {unknown}; served: {sorted(served)}")
    return models, baselines


async def run(options: EvalOptions) -> dict[str, Any]:
    options.out.mkdir(parents=True, exist_ok=True)
    if options.agreement:
        return await _run_agreement(options)
    if options.pool:
        from ensemble.experiments.evaluation.pool_command import run_pool

        return await run_pool(options)
    return await _run_ab(options)


def chosen_prompts(options: EvalOptions, spec: str) -> tuple[str, list[datasets.Prompt]]:
    """(run label, prompts): the set, its ``--split`` half, then ``--sample`` / ``--limit``."""
    prompts = datasets.load_prompts(spec, datasets.data_dir(options.data_dir))
    if options.split is not None:
        prompts = datasets.split_prompts(prompts, options.split, options.seed)
    label = Path(spec).stem if spec not in datasets.PROMPT_SETS else spec
    return label, datasets.choose(prompts, limit=options.limit, sample=options.sample,
                                  seed=options.seed)


def open_store(options: EvalOptions) -> Awaitable[ExperimentStore]:
    """The answer cache: ``--store``, else the config's store, else SQLite in data/."""
    store_cfg = options.config.store_config() or StoreConfig()
    if options.store_url:
        store_cfg = store_cfg.model_copy(update={"url": options.store_url})
    return ExperimentStore.open(store_cfg)


async def _run_ab(options: EvalOptions) -> dict[str, Any]:
    from ensemble.engine import BlendEngine

    assert options.prompts is not None
    run_label, prompts = chosen_prompts(options, options.prompts)
    models, baselines = plan_models(options)
    plan = offline.EvalPlan(
        run=run_label, prompts=prompts, models=models, baselines=baselines,
        max_tokens=options.max_tokens, temperature=options.temperature,
        concurrency=options.concurrency)
    started = time.perf_counter()
    store = await open_store(options)
    try:
        # The judge is the engine's ranker: an llm_judge calls one of the config's backends.
        async with await BlendEngine.from_config(options.config) as engine:
            judge = PairwiseJudge(await engine.ranker(judge_config(options)),
                                  tie_margin(options))
            with progress_bar(options, len(prompts) * len(plan.answering()), "answers") as bar:
                answers = await offline.collect_answers(engine, store, options.config, plan,
                                                        bar.update)
            pairs = len(prompts) * sum(1 for m in models for b in baselines if m != b)
            with progress_bar(options, pairs, "judging") as bar:
                judgements = await offline.judge_answers(judge, plan, answers, bar.update)
    finally:
        await store.aclose()
    result = offline.summarise(plan, answers, judgements, judge, {
        "prompt_set": options.prompts, "store": store.url,
        "wall_s": round(time.perf_counter() - started, 1)})
    (options.out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (options.out / "report.html").write_text(report.render(result), encoding="utf-8")
    return result


async def _run_agreement(options: EvalOptions) -> dict[str, Any]:
    directory = datasets.data_dir(options.data_dir)
    loaders = {"hhh": datasets.load_hhh, "autoj": datasets.load_autoj,
               "mt_bench_human": datasets.load_mt_bench_human}
    unknown = [name for name in options.agreement if name not in loaders]
    if unknown:
        raise ConfigError(f"--agreement: unknown sets {unknown}; known: {sorted(loaders)}")
    from ensemble.engine import BlendEngine

    margin = tie_margin(options)
    judge_cfg = judge_config(options)
    fingerprint = config_fingerprint(options.config, judge_cfg, backends_of(judge_cfg))
    tables, missing = [], {}
    store = await open_store(options)
    try:
        async with await BlendEngine.from_config(options.config) as engine:
            ranker = await engine.ranker(judge_cfg)
            for name in options.agreement:
                try:
                    pairs = datasets.choose(loaders[name](directory), limit=options.limit,
                                            sample=options.sample, seed=options.seed)
                except FileNotFoundError as exc:
                    missing[name] = str(exc)
                    continue
                judge = PoolJudge(PairwiseJudge(ranker, margin), pointwise=is_pointwise(judge_cfg),
                                  store=store, run=f"agreement:{name}",
                                  concurrency=options.concurrency, fingerprint=fingerprint)

                async def difference(pair: LabelledPair, judge: PoolJudge = judge,
                                     name: str = name) -> float:
                    return await judge.difference(Prompt(name, pair.prompt, pair.subset),
                                                  pair.a, pair.b)

                with progress_bar(options, len(pairs), name) as bar:
                    scored = await agreement_mode.score_pairs(difference, pairs, bar.update)
                await judge.flush()
                tables.append(agreement_mode.table(name, scored, margin))
    finally:
        await store.aclose()
    text = "\n\n".join(agreement_mode.markdown(t, ranker.name) for t in tables)
    if missing:
        text += "\n\n" + "\n".join(f"- {name}: not run, {why}" for name, why in missing.items())
    result = {"object": "eval.agreement", "judge": ranker.name, "tie_margin": margin,
              "tables": tables, "missing": missing}
    (options.out / "agreement.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (options.out / "agreement.md").write_text(text + "\n", encoding="utf-8")
    result["markdown"] = text
    return result


def progress_bar(options: EvalOptions, total: int, what: str) -> tqdm:  # type: ignore[type-arg]
    return tqdm(total=total, desc=what, unit="it", disable=not options.progress, leave=True)


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What the command prints at the end of an A/B run."""
    lines = []
    for c in result["comparisons"]:
        if c["rate"] is None:
            lines.append(f"{c['model']} vs {c['baseline']}: no verdicts")
            continue
        evidence = (("enough evidence: " + ("better" if c["better"] else "worse"))
                    if c["decided"] else "not enough evidence yet")
        lines.append(
            f"{c['model']} vs {c['baseline']}: win rate {100 * c['rate']:.1f}% "
            f"[{100 * c['low']:.1f}, {100 * c['high']:.1f}] (Wilson 95%), n={c['n']} "
            f"(W/T/L {c['wins']}/{c['ties']}/{c['losses']}); {evidence}")
    return lines
