"""``blendgate eval``: the A/B run end to end over fake upstreams (CLI, JSON, HTML, resume from
the store), and the judge-agreement mode on the shared HHH / Auto-J sets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ensemble.config import parse_config
from ensemble.experiments.evaluation import agreement
from ensemble.experiments.evaluation.datasets import LabelledPair, Prompt
from ensemble.experiments.evaluation.offline import EvalPlan, collect_answers
from ensemble.experiments.store import ExperimentStore
from ensemble.types import BlendRequest, BlendResult, Choice, Usage
from gateway.cli import main
from gateway.testing import FakeUpstreams, start_fake_upstreams
from tests.experiments.conftest import sqlite_url
from tests.pairrm.conftest import tiny_checkpoints, tiny_pairrm_hf_dir  # noqa: F401 - fixtures

SHARED_DATA = Path(os.environ.get("BLENDGATE_EVAL_DATA")
                   or Path(__file__).resolve().parents[3] / "shared" / "data")
TEXTS = ("Put the egg in boiling water for nine minutes.", "I do not know.")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstreams]:
    with start_fake_upstreams(texts=TEXTS) as fake:
        yield fake


def write_setup(tmp_path: Path, upstream: FakeUpstreams) -> tuple[Path, Path]:
    config = {
        "server": {"api_keys_env": None},
        "backends": {"alpha": {"kind": "openai", "base_url": upstream.ok, "model": "a"}},
        "models": [{"id": "blend", "type": "ensemble",
                    "members": [{"backend": "alpha", "samples": 2}],
                    "ranker": {"type": "none"}, "fuser": {"type": "none"}}],
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.05},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"Question number {i}?",
             "category": "cooking" if i % 2 else "science"} for i in range(4)]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return config_path, prompts


def run_cli(config: Path, prompts: Path, out: Path, judge_dir: Path) -> dict[str, Any]:
    judge = json.dumps({"type": "pairrm", "checkpoint": str(judge_dir), "device": "cpu"})
    code = main(["eval", "--config", str(config), "--prompts", str(prompts), "--models", "blend",
                 "--baseline", "alpha", "--judge", judge, "--out", str(out), "--no-progress"])
    assert code == 0
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def test_eval_end_to_end_and_resume(tmp_path: Path, upstream: FakeUpstreams,
                                    tiny_pairrm_hf_dir: Path,  # noqa: F811 - the fixture
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config, prompts = write_setup(tmp_path, upstream)
    upstream.requests.clear()
    result = run_cli(config, prompts, tmp_path / "out", tiny_pairrm_hf_dir)
    assert len(upstream.requests) == 8  # 4 prompts x (blend, alpha)
    (comparison,) = result["comparisons"]
    assert (comparison["model"], comparison["baseline"], comparison["n"]) == ("blend", "alpha", 4)
    assert comparison["wins"] + comparison["ties"] + comparison["losses"] == 4
    # The passthrough ranker keeps sample 0, which is the single model's answer: all ties.
    assert comparison["ties"] == 4 and comparison["rate"] == 0.5
    assert set(comparison["by_category"]) == {"cooking", "science"}
    assert comparison["low"] < 0.5 < comparison["high"] and not comparison["decided"]
    assert result["models"]["blend"]["answers"] == 4 and result["answers_cached"] == 0
    assert "win rate 50.0%" in capsys.readouterr().out

    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "<script" not in html and "src='http" not in html  # self-contained

    # Again: every answer comes from the store, no upstream call is made.
    again = run_cli(config, prompts, tmp_path / "out2", tiny_pairrm_hf_dir)
    assert len(upstream.requests) == 8
    assert again["answers_cached"] == 8
    assert again["comparisons"][0]["n"] == 4


class CountingEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def complete(self, request: BlendRequest) -> BlendResult:
        self.calls.append((request.model, request.messages[0].content))
        return BlendResult(request.model, [Choice(0, f"{request.model} says hi", "stop")],
                           Usage(3, 4))


async def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    config = parse_config({
        "backends": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"},
                     "b": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "b"}},
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.05}})
    prompts = [Prompt(str(i), f"prompt {i}", "all") for i in range(5)]
    store = await ExperimentStore.open(config.store_config())  # type: ignore[arg-type]
    try:
        engine = CountingEngine()
        first = EvalPlan("run", prompts[:2], ["a"], ["b"])  # "interrupted" after 2 prompts
        await collect_answers(engine, store, config, first, lambda n: None)
        assert len(engine.calls) == 4
        engine.calls.clear()
        answers = await collect_answers(engine, store, config, EvalPlan("run", prompts, ["a"],
                                                                        ["b"]), lambda n: None)
        assert sorted(engine.calls) == sorted((m, f"prompt {i}") for m in "ab" for i in (2, 3, 4))
        assert answers.cached == 4 and len(answers.by_key) == 10
        # A different model configuration is a different cache key: answered afresh.
        changed = config.model_copy(update={"backends": {
            **config.backends,
            "a": config.backends["a"].model_copy(update={"params": {"top_k": 5}})}})
        engine.calls.clear()
        await collect_answers(engine, store, changed, first, lambda n: None)
        assert sorted(engine.calls) == [("a", "prompt 0"), ("a", "prompt 1")]
    finally:
        await store.aclose()


def test_agreement_table_counts_ties_and_searches_the_threshold() -> None:
    def scored(label: str, difference: float, subset: str = "Summ") -> agreement.Scored:
        return agreement.Scored(LabelledPair(subset, "p", "x", "y", label), difference)  # type: ignore[arg-type]

    rows = [scored("a", -1.0), scored("b", 0.5), scored("tie", 0.2), scored("tie", -0.05),
            scored("a", 0.3, "Code")]
    table = agreement.table("autoj", rows, tie_margin=0.0)
    assert table["columns"]["Overall"] == {"agreement": 40.0, "n": 5}  # a, b right
    assert table["columns"]["Summ"]["agreement"] == 50.0
    # Threshold 0.2: both ties right as well (|0.2| <= 0.2), and 0.3 still a wrong "b".
    assert table["best_tie_threshold"] == {"threshold": 0.2, "overall": 80.0}
    hhh = agreement.table("hhh", [scored("a", -0.1, "helpful"), scored("a", 0.0, "harmless")],
                          tie_margin=0.0)
    assert hhh["columns"]["Help."]["agreement"] == 100.0
    assert hhh["columns"]["Harm."]["agreement"] == 0.0  # a tie is wrong where no tie exists
    assert hhh["columns"]["Total Avg."] == {"agreement": 50.0, "n": 2}


@pytest.mark.skipif(not (SHARED_DATA / "hhh_alignment").is_dir(),
                    reason=f"shared eval data not found at {SHARED_DATA}")
def test_agreement_mode_on_the_shared_sets(tmp_path: Path,
                                           tiny_pairrm_hf_dir: Path) -> None:  # noqa: F811
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"backends": {}}))
    judge = json.dumps({"type": "pairrm", "checkpoint": str(tiny_pairrm_hf_dir), "device": "cpu"})
    code = main(["eval", "--config", str(config), "--agreement", "hhh,autoj,mt_bench_human",
                 "--judge", judge, "--limit", "6", "--data-dir", str(SHARED_DATA),
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    result = json.loads((tmp_path / "agreement.json").read_text())
    hhh, autoj = result["tables"]
    assert list(hhh["columns"]) == ["Help.", "Harm.", "Hon.", "Other", "Total Avg."]
    assert hhh["columns"]["Total Avg."]["n"] == 6
    assert list(autoj["columns"])[-1] == "Overall" and autoj["pairs"] == 6
    assert "mt_bench_human" in result["missing"]  # the shared data has only a note for it
    text = (tmp_path / "agreement.md").read_text()
    assert "| PairRM (0.4b), model card | 84.75 | 84.48 | 80.33 | 90.7 | 84.62 |" in text


@pytest.mark.skipif(not (SHARED_DATA / "hhh_alignment").is_dir(),
                    reason=f"shared eval data not found at {SHARED_DATA}")
def test_agreement_verdicts_are_kept_and_a_rerun_reads_them(
        tmp_path: Path, tiny_pairrm_hf_dir: Path) -> None:  # noqa: F811
    """A long agreement run resumes: each verdict is in the store, and a rerun takes it from
    there (here the stored scores are rewritten, and the rerun's table follows them)."""
    import sqlite3

    from ensemble.experiments.evaluation.datasets import choose, load_hhh

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"backends": {}}))
    judge = json.dumps({"type": "pairrm", "checkpoint": str(tiny_pairrm_hf_dir), "device": "cpu"})
    store = sqlite_url(tmp_path)
    argv = ["eval", "--config", str(config), "--agreement", "hhh", "--judge", judge,
            "--limit", "8", "--data-dir", str(SHARED_DATA), "--store", store, "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    database = sqlite3.connect(store.split(":///", 1)[1])
    rows = database.execute("SELECT count(*) FROM eval_scores WHERE run = 'agreement:hhh'")
    assert rows.fetchone()[0] == 8
    with database:  # every stored verdict now says: the sorted pair's second answer is better
        database.execute("UPDATE eval_scores SET scores = '[0.0, 1.0]'")
    database.close()
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    pairs = choose(load_hhh(SHARED_DATA), limit=8)
    expected = sum(p.label == ("b" if p.a < p.b else "a") for p in pairs) * 100 / len(pairs)
    table = json.loads((tmp_path / "again" / "agreement.json").read_text())["tables"][0]
    assert table["columns"]["Total Avg."] == {"agreement": expected, "n": 8}


async def test_failed_answers_are_counted_with_their_reason(tmp_path: Path) -> None:
    from ensemble.errors import BackendTimeout

    class FlakyEngine(CountingEngine):
        async def complete(self, request: BlendRequest) -> BlendResult:
            if request.model == "b" and request.messages[0].content == "prompt 1":
                raise BackendTimeout("b took too long")
            return await super().complete(request)

    config = parse_config({
        "backends": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"},
                     "b": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "b"}},
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.05}})
    store = await ExperimentStore.open(config.store_config())  # type: ignore[arg-type]
    try:
        plan = EvalPlan("run", [Prompt(str(i), f"prompt {i}", "all") for i in range(3)],
                        ["a"], ["b"])
        answers = await collect_answers(FlakyEngine(), store, config, plan, lambda n: None)
        assert answers.failures == {"b": 1}
        assert answers.errors == {"b": {"BackendTimeout: b took too long": 1}}
        assert len(answers.by_key) == 5  # the failure is not cached: a re-run retries it
    finally:
        await store.aclose()


def test_a_sample_spans_the_set_keeps_its_order_and_nests() -> None:
    from ensemble.experiments.evaluation.datasets import choose

    items = list(range(100))
    twenty, thirty = choose(items, sample=20, seed=7), choose(items, sample=30, seed=7)
    assert len(twenty) == 20 and twenty == sorted(twenty)
    assert set(twenty) < set(thirty)          # a larger run reuses a smaller one's answers
    assert max(twenty) > 50                   # not the first 20 (one AlpacaEval category)
    assert choose(items, sample=20, seed=8) != twenty
    assert choose(items, sample=30, seed=7, limit=5) == thirty[:5]
    assert choose(items, limit=3) == [0, 1, 2]
