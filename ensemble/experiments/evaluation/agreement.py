"""A judge's agreement with human labels, in the layout of the PairRM model card's tables.

Each labelled pair is judged by ``PairwiseJudge`` (both orders, averaged), or scored answer
by answer by a pointwise judge; every verdict is kept in the store, so a long run resumes. The prediction is
"a", "b", or "tie" when the score difference is within the tie margin; agreement is the share of
pairs where it equals the human label, ties kept in the denominator (Auto-J's "single"
protocol). HHH has no tie labels, so there a tie prediction is simply wrong. For Auto-J the
agreement is also given at the best tie threshold in 0, 0.01, ..., 2.0 (Auto-J's protocol for
reward models), with the threshold. Subset and overall figures are micro-averaged over pairs,
as the card's "Total Avg." (187/221) and "Overall" (822/1392) are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ensemble.experiments.evaluation.datasets import AUTOJ_GROUPS, HHH_SUBSETS, LabelledPair

# The model card's published figures for PairRM (0.4b), to print next to a run.
PAIRRM_CARD = {
    "hhh": {"Help.": 84.75, "Harm.": 84.48, "Hon.": 80.33, "Other": 90.7, "Total Avg.": 84.62},
    "autoj": {"Summ": 56.94, "Exam": 52.78, "Code": 58.33, "Rewriting": 55.83, "Crea W": 61.57,
              "Func W": 59.17, "Comm": 57.64, "NLP": 62.5, "Overall": 59.05},
    "mt_bench_human": {"Human Preference": 59.0},
}


@dataclass(frozen=True)
class Scored:
    pair: LabelledPair
    difference: float  # score(b) - score(a), order-averaged


# score(b) - score(a) for one labelled pair: the judge's order-averaged verdict (cached)
Differ = Callable[[LabelledPair], Awaitable[float]]


async def score_pairs(difference: Differ, pairs: Sequence[LabelledPair],
                      progress: Callable[[int], None]) -> list[Scored]:
    scored = []
    for pair in pairs:
        scored.append(Scored(pair, await difference(pair)))
        progress(1)
    return scored


def predict(difference: float, tie_margin: float) -> str:
    rounded = round(difference, 6)
    return "b" if rounded > tie_margin else "a" if rounded < -tie_margin else "tie"


def agreement(scored: Sequence[Scored], tie_margin: float) -> float:
    hits = sum(predict(s.difference, tie_margin) == s.pair.label for s in scored)
    return 100.0 * hits / len(scored) if scored else float("nan")


def table(name: str, scored: Sequence[Scored], tie_margin: float) -> dict[str, Any]:
    """Columns in the card's order, each {agreement, n}; plus the overall column."""
    columns: list[tuple[str, list[Scored]]]
    if name == "hhh":
        columns = [(label, [s for s in scored if s.pair.subset == subset])
                   for subset, label in HHH_SUBSETS.items()]
        columns.append(("Total Avg.", list(scored)))
    elif name == "autoj":
        columns = [(group, [s for s in scored if s.pair.subset == group])
                   for group in AUTOJ_GROUPS]
        columns.append(("Overall", list(scored)))
    else:
        columns = [("Human Preference", list(scored))]
    result: dict[str, Any] = {
        "set": name, "tie_margin": tie_margin, "pairs": len(scored),
        "columns": {label: {"agreement": agreement(rows, tie_margin), "n": len(rows)}
                    for label, rows in columns},
        "pairrm_card": PAIRRM_CARD[name],
    }
    if name == "autoj":
        best = max((agreement(scored, t / 100), -t) for t in range(201))
        result["best_tie_threshold"] = {"threshold": -best[1] / 100, "overall": best[0]}
    return result


def markdown(result: dict[str, Any], judge_name: str) -> str:
    columns = result["columns"]
    labels = list(columns)
    lines = [f"### {result['set']} ({result['pairs']} pairs, tie margin {result['tie_margin']})",
             "", "| judge | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels),
             f"| {judge_name} | " + " | ".join(f"{columns[c]['agreement']:.2f}" for c in labels)
             + " |"]
    card = result["pairrm_card"]
    lines.append("| PairRM (0.4b), model card | "
                 + " | ".join(str(card.get(c, "")) for c in labels) + " |")
    if "best_tie_threshold" in result:
        best = result["best_tie_threshold"]
        lines += ["", (f"Best tie threshold (Auto-J protocol): {best['threshold']:.2f} -> "
                  f"Overall {best['overall']:.2f}")]
    return "\n".join(lines)
