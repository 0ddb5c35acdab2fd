"""An offline A/B run: every model answers every prompt, a judge compares each model with each
baseline, and the result is summarised per model and per comparison.

Answers are cached in the experiment store under a key made of the model's configuration (its
config entry and the backends it uses), the prompt and the sampling settings. Running the same
command again, after an interruption or with more prompts, answers only what is missing; a
changed model configuration gets fresh answers. Judging is not cached: it is cheap next to
generation. A model that fails on a prompt is counted and that prompt is left out of its
comparisons.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel

from ensemble.config import BlendgateConfig, EnsembleModelConfig, LLMFuserConfig
from ensemble.experiments.evaluation.datasets import Prompt
from ensemble.experiments.events import EvalAnswer
from ensemble.experiments.judge import PairwiseJudge
from ensemble.experiments.runtime import Completer
from ensemble.experiments.stats import percentile, win_rate
from ensemble.experiments.store import ExperimentStore
from ensemble.types import BlendRequest, ChatMessage, SamplingParams

Progress = Callable[[int], None]  # advance a progress bar by n steps


@dataclass(frozen=True)
class EvalPlan:
    run: str  # a label for the run (prompt set), stored with the answers
    prompts: Sequence[Prompt]
    models: Sequence[str]  # judged against each baseline
    baselines: Sequence[str]
    max_tokens: int | None = None
    temperature: float | None = None
    concurrency: int = 1
    alpha: float = 0.05

    def answering(self) -> list[str]:
        return list(dict.fromkeys([*self.baselines, *self.models]))


@dataclass
class Answers:
    by_key: dict[tuple[str, str], EvalAnswer] = field(default_factory=dict)  # (model, prompt)
    cached: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> error -> count


def model_fingerprint(config: BlendgateConfig, model_id: str) -> str:
    """What decides a model's answers: its config entry and the backends it calls."""
    entry = next((m for m in config.models if m.id == model_id), None)
    if entry is None:
        backends = [model_id]
    elif isinstance(entry, EnsembleModelConfig):
        backends = [m.backend for m in entry.members]
        fuser = entry.fuser
        llm = fuser if isinstance(fuser, LLMFuserConfig) else getattr(fuser, "fallback", None)
        if llm is not None:
            backends.append(llm.backend)
    else:
        backends = [entry.backend]
    return config_fingerprint(config, entry if entry is not None else model_id, backends)


def config_fingerprint(config: BlendgateConfig, what: BaseModel | str,
                       backends: Iterable[str]) -> str:
    """A hash of a component's config (a model, a member, a ranker, a fuser) and of the
    backends it calls: what decides its output, so the cache key of that output."""
    parts = {
        "model": _set_fields(what) if isinstance(what, BaseModel) else what,
        "backends": {b: _set_fields(config.backends[b]) for b in sorted(set(backends))},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


DISCRIMINATORS = ("type", "kind")  # which config class a section is: its default is its value


def _set_fields(model: BaseModel) -> dict[str, Any]:
    """Only what was set, so a later blendgate with new (defaulted) fields keeps the cache;
    but always the discriminator: ``{type: consensus}`` and ``{type: none}`` set nothing else,
    and must not share a cache entry (before 7 Dec 2026 they did)."""
    found: dict[str, Any] = model.model_dump(mode="json", exclude_defaults=True)
    for name in DISCRIMINATORS:
        if name in type(model).model_fields:
            found[name] = getattr(model, name)
    return found


def content_key(*parts: object) -> str:
    """A cache key: the hash of ``parts`` (JSON values)."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def answer_key(fingerprint: str, prompt: Prompt, plan: EvalPlan) -> str:
    data = [fingerprint, prompt.text, plan.max_tokens, plan.temperature]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


async def collect_answers(engine: Completer, store: ExperimentStore, config: BlendgateConfig,
                          plan: EvalPlan, progress: Progress) -> Answers:
    answers = Answers()
    fingerprints = {m: model_fingerprint(config, m) for m in plan.answering()}
    wanted = {(m, p.id): answer_key(fingerprints[m], p, plan)
              for m in plan.answering() for p in plan.prompts}
    cached = await store.eval_answers(wanted.values())
    todo: list[tuple[str, Prompt]] = []
    for model in plan.answering():
        for prompt in plan.prompts:
            hit = cached.get(wanted[(model, prompt.id)])
            if hit is None:
                todo.append((model, prompt))
            else:
                answers.by_key[(model, prompt.id)] = hit
                answers.cached += 1
    progress(answers.cached)
    limit = asyncio.Semaphore(plan.concurrency)
    params = SamplingParams(max_tokens=plan.max_tokens, temperature=plan.temperature)

    async def answer(model: str, prompt: Prompt) -> None:
        async with limit:
            request = BlendRequest(model, (ChatMessage("user", prompt.text),), params)
            started = time.perf_counter()
            try:
                result = await engine.complete(request)
            except Exception as exc:  # noqa: BLE001 - counted, with its reason; the run goes on
                answers.failures[model] = answers.failures.get(model, 0) + 1
                reasons = answers.errors.setdefault(model, {})
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                reasons[reason] = reasons.get(reason, 0) + 1
                progress(1)
                return
            item = EvalAnswer(
                key=wanted[(model, prompt.id)], run=plan.run, model=model, prompt_id=prompt.id,
                text=result.choices[0].text, latency_s=time.perf_counter() - started,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens)
            answers.by_key[(model, prompt.id)] = item
            store.submit(item)  # written within flush_interval_s: an interruption loses little
            progress(1)

    await asyncio.gather(*(answer(model, prompt) for model, prompt in todo))
    await store.flush()
    return answers


@dataclass(frozen=True)
class Judgement:
    prompt_id: str
    category: str
    model: str
    baseline: str
    outcome: str  # the model's side
    score: float
    baseline_score: float


async def judge_answers(judge: PairwiseJudge, plan: EvalPlan, answers: Answers,
                        progress: Progress) -> list[Judgement]:
    judgements = []
    for prompt in plan.prompts:
        messages = (ChatMessage("user", prompt.text),)
        for model in plan.models:
            for baseline in plan.baselines:
                if model == baseline:
                    continue
                mine = answers.by_key.get((model, prompt.id))
                theirs = answers.by_key.get((baseline, prompt.id))
                if mine is not None and theirs is not None:
                    verdict = await judge.judge(messages, theirs.text, mine.text)
                    judgements.append(Judgement(prompt.id, prompt.category, model, baseline,
                                                verdict.outcome, verdict.score_b,
                                                verdict.score_a))
                progress(1)
    return judgements


def summarise(plan: EvalPlan, answers: Answers, judgements: Sequence[Judgement],
              judge: PairwiseJudge, meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON result: per model (latency, tokens), per comparison (win rate with intervals,
    overall and by category), and every prompt's answers and verdicts."""
    models = {}
    for model in plan.answering():
        rows = [a for (m, _), a in answers.by_key.items() if m == model]
        latencies = [a.latency_s for a in rows]
        models[model] = {
            "answers": len(rows), "failures": answers.failures.get(model, 0),
            "errors": answers.errors.get(model, {}),
            "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
            "latency_mean_s": sum(latencies) / len(latencies) if latencies else None,
            "completion_tokens_mean": _mean([a.completion_tokens for a in rows]),
            "prompt_tokens_mean": _mean([a.prompt_tokens for a in rows]),
        }
    comparisons = []
    for model in plan.models:
        for baseline in plan.baselines:
            if model == baseline:
                continue
            mine = [j for j in judgements if j.model == model and j.baseline == baseline]
            categories = sorted({j.category for j in mine})
            comparisons.append({
                "model": model, "baseline": baseline,
                **asdict(win_rate([j.outcome for j in mine], plan.alpha)),
                "by_category": {c: asdict(win_rate(
                    [j.outcome for j in mine if j.category == c], plan.alpha))
                    for c in categories},
            })
    prompts = [{
        "id": p.id, "category": p.category, "prompt": p.text,
        "answers": {m: a.text for m in plan.answering()
                    if (a := answers.by_key.get((m, p.id))) is not None},
        "verdicts": [asdict(j) for j in judgements if j.prompt_id == p.id],
    } for p in plan.prompts]
    return {
        "object": "eval.result", "run": plan.run, "prompts_total": len(plan.prompts),
        "models": models, "baselines": list(plan.baselines),
        "judge": {"name": judge.name, "tie_margin": judge.tie_margin},
        "alpha": plan.alpha, "answers_cached": answers.cached,
        "settings": {"max_tokens": plan.max_tokens, "temperature": plan.temperature},
        "win_rate": "(wins + ties/2) / n, Wilson interval; cs_*: anytime-valid sequence",
        "comparisons": comparisons, "prompts": prompts,
        "answer_stats": {m: [{"latency_s": a.latency_s, "completion_tokens": a.completion_tokens}
                             for (model, _), a in answers.by_key.items() if model == m]
                         for m in plan.answering()},
        **meta,
    }


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None
