"""Drive an experiment on a running gateway with real prompts, as a client would, and print its
statistics once the shadow judge has caught up.

Sends ``--requests`` AlpacaEval instructions (a seeded sample over all categories, read in
place from the shared data) to the experiment's model id through openai-python, one at a time,
spread over ``--users`` user ids (so the split's stickiness has several keys), then polls
``GET /v1/experiments/{id}`` until every shadow run has a verdict (or was dropped / failed) or
``--wait`` seconds pass, and prints the per-arm statistics::

    make serve CONFIG=configs/ab-test.yaml            # in one terminal
    .venv/bin/python benchmarks/drive_experiment.py --requests 30 --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import httpx
from openai import OpenAI

from ensemble.experiments.evaluation.datasets import choose, data_dir, load_prompts


def shadow_settled(stats: dict[str, Any], sent: int) -> bool:
    """Every request's shadow run has ended: completed (judged), dropped or failed."""
    shadow = stats.get("shadow") or {}
    ended = shadow.get("completed", 0) + shadow.get("dropped", 0) + shadow.get("failed", 0)
    return bool(ended >= sent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--experiment", default="assistant")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1, help="prompt sample seed")
    parser.add_argument("--wait", type=float, default=3600, help="seconds to wait for verdicts")
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    prompts = choose(load_prompts("alpaca_eval", data_dir(args.data_dir)),
                     sample=args.requests, seed=args.seed)
    client = OpenAI(base_url=f"{args.base_url}/v1", api_key=args.api_key, timeout=900)
    for number, prompt in enumerate(prompts):
        started = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(
            model=args.experiment, user=f"user-{number % args.users}",
            max_tokens=args.max_tokens, messages=[{"role": "user", "content": prompt.text}])
        answer = raw.parse().choices[0].message.content or ""
        print(f"{number + 1}/{len(prompts)} arm={raw.headers.get('x-blendgate-arm')} "
              f"{time.perf_counter() - started:.1f}s {answer[:60]!r}", flush=True)

    headers = {"Authorization": f"Bearer {args.api_key}"}
    url = f"{args.base_url}/v1/experiments/{args.experiment}"
    deadline = time.monotonic() + args.wait
    while True:
        stats = httpx.get(url, headers=headers, timeout=60).json()
        if shadow_settled(stats, len(prompts)) or time.monotonic() > deadline:
            break
        time.sleep(10)
    time.sleep(3)  # the last verdicts reach the store within its flush interval
    stats = httpx.get(url, headers=headers, timeout=60).json()
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
