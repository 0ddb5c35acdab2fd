"""End-to-end latency of an ensemble against its best member, side by side in one run.

Starts ``blendgate serve`` (the offline default unless ``--config``), then sends the same
prompts (a seeded sample of a prompt set's ``--split`` half, as ``blendgate eval --pool``
draws them) with the same ``max_tokens`` to each ``--models`` model through openai-python,
one request at a time. The models take turns prompt by prompt, the first one alternating, so
a change in machine load hits them alike. Per model: median and p90 wall time, completion
tokens, and for an ensemble the share of each answer path (``blend.path``: which cascade stage
answered, whether fusion ran). The ratio is each model's median over the last model's.

    .venv/bin/python benchmarks/bench_latency.py --models blend,qwen --sample 20 \\
        --max-tokens 128 --json benchmarks/out/latency.json

Warm-up: one untimed request per model first (a first request loads prompt caches).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_common import free_port, quantile
from bench_gateway import start, stop
from openai import OpenAI

from ensemble.experiments.evaluation import datasets

OUT = Path(__file__).resolve().parent / "out"


@dataclass
class Timing:
    model: str
    prompt_id: str
    latency_s: float
    completion_tokens: int
    path: str | None  # blend.path's answer path; None for a single model


@dataclass
class Row:
    model: str
    requests: int
    p50_s: float
    p90_s: float
    completion_tokens_mean: float
    paths: dict[str, float] = field(default_factory=dict)
    ratio_p50: float | None = None  # this model's p50 over the baseline's


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="blendgate config (default: the offline default)")
    parser.add_argument("--models", default="blend,qwen",
                        help="comma-separated; the last one is the baseline of the ratios")
    parser.add_argument("--prompts", default="alpaca_eval")
    parser.add_argument("--split", choices=("dev", "test"), default="test")
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--data-dir", help="eval data sets (default ../shared/data)")
    parser.add_argument("--binary", default=str(Path(sys.executable).parent / "blendgate"))
    parser.add_argument("--json", type=Path, help="write the rows and every timing here")
    return parser.parse_args()


def chosen(args: argparse.Namespace) -> list[datasets.Prompt]:
    prompts = datasets.load_prompts(args.prompts, datasets.data_dir(args.data_dir))
    prompts = datasets.split_prompts(prompts, args.split, args.seed)
    return datasets.choose(prompts, sample=args.sample, seed=args.seed)


def ask(client: OpenAI, model: str, prompt: datasets.Prompt, max_tokens: int) -> Timing:
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt.text}],
        max_tokens=max_tokens, extra_body={"blend": {"return_candidates": True}})
    elapsed = time.perf_counter() - started
    path = ((reply.model_extra or {}).get("blend") or {}).get("path") or {}
    tokens = reply.usage.completion_tokens if reply.usage else 0
    return Timing(model, prompt.id, elapsed, tokens, path.get("path"))


def summarise(timings: list[Timing], models: list[str]) -> list[Row]:
    rows = []
    for model in models:
        mine = [t for t in timings if t.model == model]
        latencies = [t.latency_s for t in mine]
        paths = Counter(t.path for t in mine if t.path)
        rows.append(Row(model, len(mine), quantile(latencies, 0.5), quantile(latencies, 0.9),
                        sum(t.completion_tokens for t in mine) / len(mine),
                        {p: round(c / len(mine), 3) for p, c in sorted(paths.items())}))
    for row in rows:
        row.ratio_p50 = round(row.p50_s / rows[-1].p50_s, 3)
    return rows


def main() -> None:
    args = parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    prompts = chosen(args)
    port = free_port()
    argv = [args.binary, "serve", "--port", str(port), *(["--config", args.config]
                                                         if args.config else [])]
    server = start("bench-latency", argv, port, "/health", timeout_s=600)
    timings: list[Timing] = []
    try:
        client = OpenAI(base_url=server.base_url, api_key="unused", timeout=900, max_retries=0)
        for model in models:
            ask(client, model, prompts[0], args.max_tokens)
        for index, prompt in enumerate(prompts):
            turn = models[index % len(models):] + models[:index % len(models)]
            for model in turn:
                timing = ask(client, model, prompt, args.max_tokens)
                timings.append(timing)
                print(f"{prompt.id} {model}: {timing.latency_s:.2f}s "
                      f"{timing.completion_tokens} tokens {timing.path or ''}", flush=True)
    finally:
        stop(server)
    rows = summarise(timings, models)
    print("\n| model | requests | p50 | p90 | completion tokens | p50 / baseline | paths |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.model} | {row.requests} | {row.p50_s:.2f} s | {row.p90_s:.2f} s | "
              f"{row.completion_tokens_mean:.0f} | {row.ratio_p50:.2f}x | "
              f"{', '.join(f'{p} {s:.0%}' for p, s in row.paths.items()) or '-'} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {
            "config": args.config or "default", "split": args.split, "sample": args.sample,
            "seed": args.seed, "max_tokens": args.max_tokens,
            "rows": [asdict(r) for r in rows], "timings": [asdict(t) for t in timings]}
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
