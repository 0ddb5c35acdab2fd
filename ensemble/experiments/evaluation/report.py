"""A self-contained HTML report of an eval result: plots as inline PNG (matplotlib, Agg), no
external file, script or font, so it opens anywhere and can be attached to a ticket.

Plots: win rate with its Wilson interval per comparison (and the anytime-valid sequence), latency
and completion tokens per model, and win rate by prompt category. A pool run (``render_pool``):
win rate against the best member per policy, with its bootstrap interval, against completion
tokens and against median latency.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.num{text-align:right}img{max-width:100%}
details{margin:.3em 0}pre{white-space:pre-wrap;background:#f8f8f8;padding:.5em}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}
"""


def render(result: dict[str, Any]) -> str:
    comparisons = result["comparisons"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>blendgate eval: {_e(result['run'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>blendgate eval: {_e(result['run'])}</h1>",
        (f"<p>{result['prompts_total']} prompts; judge <b>{_e(result['judge']['name'])}</b> "
        f"(tie margin {result['judge']['tie_margin']}); {result['answers_cached']} answers "
        f"from the cache. Win rate = (wins + ties/2) / n, {100 * (1 - result['alpha']):.0f}% "
        "Wilson interval; the anytime-valid confidence sequence decides "
        "&ldquo;enough evidence&rdquo;.</p>"),
        "<h2>Win rate against the baseline</h2>", _comparison_table(comparisons),
        _img(_win_rate_plot(comparisons)),
        "<h2>Latency and cost per model</h2>", _model_table(result["models"]),
        "<div class='grid'>", _img(_latency_plot(result)), _img(_tokens_plot(result)), "</div>",
        "<h2>Win rate by prompt category</h2>", _img(_category_plot(comparisons)),
        "<h2>Answers</h2>", _answers(result["prompts"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _e(text: object) -> str:
    return html.escape(str(text))


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{100 * value:.1f}%"


def _comparison_table(comparisons: list[dict[str, Any]]) -> str:
    rows = [("<table><tr><th>model</th><th>baseline</th><th>n</th><th>wins / ties / losses</th>"
            "<th>win rate</th><th>Wilson interval</th><th>confidence sequence</th>"
            "<th>enough evidence</th></tr>")]
    for c in comparisons:
        verdict = ("yes: " + ("better" if c["better"] else "worse")) if c["decided"] else "not yet"
        rows.append(
            f"<tr><td>{_e(c['model'])}</td><td>{_e(c['baseline'])}</td><td class=num>{c['n']}</td>"
            f"<td class=num>{c['wins']} / {c['ties']} / {c['losses']}</td>"
            f"<td class=num>{_pct(c['rate'])}</td>"
            f"<td class=num>{_pct(c['low'])} &ndash; {_pct(c['high'])}</td>"
            f"<td class=num>{_pct(c['cs_low'])} &ndash; {_pct(c['cs_high'])}</td>"
            f"<td>{verdict}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _model_table(models: dict[str, dict[str, Any]]) -> str:
    rows = [("<table><tr><th>model</th><th>answers</th><th>failures</th><th>latency p50</th>"
            "<th>latency p95</th><th>completion tokens per answer, all calls (mean)</th></tr>")]
    for name, m in models.items():
        rows.append(
            f"<tr><td>{_e(name)}</td><td class=num>{m['answers']}</td>"
            f"<td class=num title='{_e(_reasons(m))}'>{m['failures']}</td>"
            f"<td class=num>{_s(m['latency_p50_s'])}</td>"
            f"<td class=num>{_s(m['latency_p95_s'])}</td>"
            f"<td class=num>{_n(m['completion_tokens_mean'])}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _reasons(model: dict[str, Any]) -> str:
    return "; ".join(f"{count} x {why}" for why, count in model.get("errors", {}).items())


def _s(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.2f} s"


def _n(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.0f}"


def _answers(prompts: list[dict[str, Any]]) -> str:
    parts = []
    for p in prompts:
        verdicts = ", ".join(f"{v['model']} vs {v['baseline']}: {v['outcome']}"
                             for v in p["verdicts"])
        body = "".join(f"<h4>{_e(m)}</h4><pre>{_e(text)}</pre>" for m, text in p["answers"].items())
        parts.append(f"<details><summary>[{_e(p['category'])}] {_e(p['prompt'][:120])} "
                     f"&mdash; {_e(verdicts)}</summary><pre>{_e(p['prompt'])}</pre>{body}</details>")
    return "".join(parts)


def _img(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _win_rate_plot(comparisons: list[dict[str, Any]]) -> Any:
    figure, axes = plt.subplots(figsize=(8, 0.7 + 0.6 * max(len(comparisons), 1)))
    labels = [f"{c['model']} vs {c['baseline']}" for c in comparisons]
    for y, c in enumerate(comparisons):
        if c["rate"] is None:
            continue
        axes.plot([c["cs_low"], c["cs_high"]], [y, y], color="#bbb", linewidth=6,
                  solid_capstyle="butt", label="confidence sequence" if y == 0 else None)
        axes.errorbar(c["rate"], y, xerr=[[c["rate"] - c["low"]], [c["high"] - c["rate"]]],
                      fmt="o", color="#1f5fa8", capsize=4,
                      label="win rate, Wilson interval" if y == 0 else None)
    axes.axvline(0.5, color="#c33", linestyle="--", linewidth=1)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlim(0, 1)
    axes.set_xlabel("win rate against the baseline")
    if comparisons:
        axes.legend(loc="lower right", fontsize=8)
    return figure


def _latency_plot(result: dict[str, Any]) -> Any:
    figure, axes = plt.subplots(figsize=(5, 3.2))
    names = list(result["models"])
    data = [[a["latency_s"] for a in _model_answers(result, n)] or [0.0] for n in names]
    axes.boxplot(data, tick_labels=names)
    axes.set_ylabel("latency per answer (s)")
    return figure


def _tokens_plot(result: dict[str, Any]) -> Any:
    figure, axes = plt.subplots(figsize=(5, 3.2))
    names = list(result["models"])
    values = [result["models"][n]["completion_tokens_mean"] or 0 for n in names]
    axes.bar(names, values, color="#6a9f58")
    axes.set_ylabel("completion tokens per answer,\nall calls (mean)")
    return figure


def _category_plot(comparisons: list[dict[str, Any]]) -> Any:
    categories = sorted({c for comp in comparisons for c in comp["by_category"]})
    figure, axes = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / max(len(comparisons), 1)
    for i, comp in enumerate(comparisons):
        xs = [k + i * width for k in range(len(categories))]
        rates = [comp["by_category"].get(c, {}).get("rate") or 0 for c in categories]
        axes.bar(xs, rates, width, label=f"{comp['model']} vs {comp['baseline']}")
    axes.axhline(0.5, color="#c33", linestyle="--", linewidth=1)
    axes.set_xticks([k + 0.4 - width / 2 for k in range(len(categories))], categories,
                    rotation=20)
    axes.set_ylim(0, 1)
    axes.set_ylabel("win rate")
    if comparisons:
        axes.legend(fontsize=8)
    return figure


def _model_answers(result: dict[str, Any], model: str) -> list[dict[str, Any]]:
    return result.get("answer_stats", {}).get(model, [])


# ----------------------------------------------------------------------------- pool runs


def render_pool(result: dict[str, Any]) -> str:
    """The report of ``blendgate eval --pool``: quality against cost per policy, the table,
    and every prompt's picks."""
    judge = result["judge"]
    split = f", {result['split']} split" if result["split"] else ""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        (f"<title>blendgate eval --pool: {_e(result['run'])}</title><style>{_STYLE}</style>"
         "</head><body>"),
        f"<h1>blendgate eval --pool: {_e(result['run'])}</h1>",
        (f"<p>{result['prompts_scored']} of {result['prompts_total']} prompts scored "
         f"(seed {result['seed']}{_e(split)}); judge <b>{_e(judge['name'])}</b> "
         f"({'pointwise' if judge['pointwise'] else 'pairwise'}, tie margin "
         f"{judge['tie_margin']}). Every policy is scored off one candidate pool; win rate is "
         f"against the best member, <b>{_e(result['best_member'])}</b> alone: "
         f"{_e(result['win_rate'])}.</p>"),
        "<h2>Quality against cost</h2>", _img(_quality_cost_plot(result["policies"])),
        "<h2>Policies</h2>", _policy_table(result["policies"]),
        "<h2>Picks</h2>", _pool_picks(result["prompts"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def _policy_table(rows: list[dict[str, Any]]) -> str:
    head = ("<table><tr><th>policy</th><th>n</th><th>wins / ties / losses</th>"
            "<th>win rate</th><th>bootstrap 95%</th><th>judge score (mean)</th>"
            "<th>completion tokens (mean)</th><th>latency p50</th><th>latency p90</th></tr>")
    body = [
        f"<tr><td>{_e(r['policy'])}</td><td class=num>{r['n']}</td>"
        f"<td class=num>{r['wins']} / {r['ties']} / {r['losses']}</td>"
        f"<td class=num>{_pct(r['win_rate'])}</td>"
        f"<td class=num>{_pct(r['low'])} &ndash; {_pct(r['high'])}</td>"
        f"<td class=num>{_f(r['judge_score_mean'])}</td>"
        f"<td class=num>{_n(r['completion_tokens_mean'])}</td>"
        f"<td class=num>{_s(r['latency_p50_s'])}</td><td class=num>{_s(r['latency_p90_s'])}</td>"
        "</tr>"
        for r in rows]
    return head + "".join(body) + "</table>"


def _f(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.3f}"


def _quality_cost_plot(rows: list[dict[str, Any]]) -> Any:
    """Win rate (bootstrap interval as error bars) against tokens and against latency."""
    figure, (by_tokens, by_latency) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    shown = [r for r in rows if r["win_rate"] is not None]
    markers = "osD^v<>PX*h"  # policies that cost the same still tell apart in the legend
    for axes, cost, label in ((by_tokens, "completion_tokens_mean", "completion tokens (mean)"),
                              (by_latency, "latency_p50_s", "latency p50 (s)")):
        for i, row in enumerate(shown):
            axes.errorbar(row[cost] or 0.0, row["win_rate"],
                          yerr=[[row["win_rate"] - row["low"]], [row["high"] - row["win_rate"]]],
                          fmt=markers[i % len(markers)], capsize=4, alpha=0.8,
                          label=row["policy"])
        axes.axhline(0.5, color="#c33", linestyle="--", linewidth=1)
        axes.set_xlabel(label)
        axes.set_ylim(-0.03, 1.03)
    by_tokens.set_ylabel("win rate against the best member")
    if shown:
        by_latency.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    return figure


def _pool_picks(prompts: list[dict[str, Any]]) -> str:
    parts = []
    for p in prompts:
        body = "".join(
            f"<h4>{_e(name)} (judge {pick['judge_score']:.3f}, {pick['latency_s']:.2f} s, "
            f"{pick['completion_tokens']} tokens)</h4><pre>{_e(pick['text'])}</pre>"
            for name, pick in p["picks"].items())
        parts.append(f"<details><summary>[{_e(p['category'])}] {_e(p['prompt'][:120])}"
                     f"</summary><pre>{_e(p['prompt'])}</pre>{body}</details>")
    return "".join(parts)
