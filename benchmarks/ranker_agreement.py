"""Summarise ``benchmarks/train_ranker_minilm.sh``: agreement on HHH and Auto-J with 95%
Wilson intervals for each judge it evaluated, and the training run's own figures.

    python benchmarks/ranker_agreement.py benchmarks/out/ranker-minilm

Reads ``OUT/eval-*/agreement.json`` (``blendgate eval --agreement``: ties counted, so a tie
prediction is wrong on HHH and right only on Auto-J's tie labels) and
``OUT/trained/metrics.jsonl``. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ensemble.experiments.stats import wilson_interval

OVERALL = {"hhh": "Total Avg.", "autoj": "Overall"}
CARD = {"hhh": 84.62, "autoj": 59.05}


def agreement_rows(out: Path) -> list[str]:
    rows = ["| set | judge | pairs | agreement | 95% CI (Wilson) | PairRM card |",
            "|---|---|---:|---:|---|---:|"]
    for path in sorted(out.glob("eval-*/agreement.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        judge = path.parent.name.removeprefix("eval-")
        for table in result["tables"]:
            column = table["columns"][OVERALL[table["set"]]]
            n, share = column["n"], column["agreement"] / 100
            low, high = wilson_interval(round(share * n), n)
            rows.append(f"| {table['set']} | {judge} | {n} | {100 * share:.2f} | "
                        f"[{100 * low:.1f}, {100 * high:.1f}] | {CARD[table['set']]} |")
    return rows


def training_lines(metrics: Path) -> list[str]:
    if not metrics.is_file():
        return []
    records: list[dict[str, Any]] = [json.loads(line) for line in
                                     metrics.read_text(encoding="utf-8").splitlines()]
    # A stop step is evaluated by the stop and again at the end: one line per step.
    evals = list({r["step"]: r for r in records if "eval_loss" in r}.values())
    train = [r for r in records if "loss" in r]
    last_record = records[-1]
    lines = [(f"Training: {last_record['step']} steps, {last_record['cpu_s'] / 60:.1f} CPU-min "
              f"(process time, last record), epoch {last_record.get('epoch', 0):.2f}.")]
    if train:
        first, last = train[0], train[-1]
        lines.append(f"Train loss (10-step means): {first['loss']:.4f} at step {first['step']}"
                     f" -> {last['loss']:.4f} at step {last['step']}.")
    for record in evals:
        lines.append(f"Held-out (every ordered pair) at step {record['step']}: loss "
                     f"{record['eval_loss']:.4f}, pair accuracy "
                     f"{100 * record['eval_pair_accuracy']:.2f}%.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print("\n".join(agreement_rows(args.out)))
    print()
    print("\n".join(training_lines(args.out / "trained" / "metrics.jsonl")))


if __name__ == "__main__":
    main()
