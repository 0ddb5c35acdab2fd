"""``blendgate export-preferences``: verdicts and feedback in the store -> preference pairs
that ``train-ranker`` reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ensemble.config import StoreConfig
from ensemble.experiments.events import (
    CompletionEvent,
    FeedbackEvent,
    TranscriptEvent,
    VerdictEvent,
)
from ensemble.experiments.runtime import ExperimentRuntime, Served
from ensemble.experiments.store import ExperimentStore
from ensemble.training.preference_sets import load_examples
from ensemble.types import BlendRequest, ChatMessage, Usage
from gateway.cli import main
from tests.experiments.conftest import sqlite_url

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
OTHER = [{"role": "user", "content": "2+2?"}]


async def fill(url: str) -> None:
    store = await ExperimentStore.open(StoreConfig(url=url, flush_interval_s=0.01))
    transcripts = {"r1": (CHAT, "Paris."), "r1:shadow": (CHAT, "Lyon."),
                   "r2": (OTHER, "4"), "r2:shadow": (OTHER, "5"),
                   "r3": (OTHER, "four"), "r3:shadow": (OTHER, "four"),
                   "f1": (CHAT, "It is Paris."), "f2": (CHAT, "Marseille."),
                   "f3": (OTHER, "Four.")}
    for cid, (messages, text) in transcripts.items():
        store.submit(CompletionEvent(id=cid, model="m", experiment="ab", arm="a"))
        store.submit(TranscriptEvent(cid, messages, text))
    store.submit(VerdictEvent("ab", "r1", "shadow", "served", "loss", 0.2, 0.8, "pairrm"))
    store.submit(VerdictEvent("ab", "r2", "shadow", "served", "win", 0.9, 0.1, "pairrm"))
    store.submit(VerdictEvent("ab", "r3", "shadow", "served", "tie", 0.5, 0.5, "pairrm"))
    store.submit(VerdictEvent("ab", "r9", "shadow", "served", "win", 0.9, 0.1, "pairrm"))
    for i, (cid, score) in enumerate([("f1", 1.0), ("f1", 1.0), ("f2", 0.0), ("f3", 1.0)]):
        store.submit(FeedbackEvent(f"fb{i}", cid, "m", score, thumbs="up" if score else "down"))
    await store.flush()
    await store.aclose()


async def test_verdicts_and_feedback_become_pairs_train_ranker_reads(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    await fill(url)
    out = tmp_path / "prefs.jsonl"
    # main() runs its own event loop: call it from a thread, as a shell would from outside.
    status = await asyncio.to_thread(main, ["export-preferences", "--store", url,
                                            "--out", str(out)])
    assert status == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    summary = [(r["origin"], r["chosen"][-1]["content"], r["rejected"][-1]["content"])
               for r in records]
    # r1: the served answer won (shadow's loss); r2: the shadow won; r3 tie and r9 (no
    # transcript) make none; feedback: f1 (2 up) over f2 (down) on the same chat, f3 alone.
    assert summary == [("verdict", "Paris.", "Lyon."), ("verdict", "5", "4"),
                       ("feedback", "It is Paris.", "Marseille.")]
    assert records[0]["chosen"][:-1] == CHAT and records[2]["votes"] == [2, 1]
    examples = load_examples(str(out), tmp_path)
    assert [(e.source, e.candidates) for e in examples] == [
        ("Be brief.Capital of France?", ("Paris.", "Lyon.")), ("2+2?", ("5", "4")),
        ("Be brief.Capital of France?", ("It is Paris.", "Marseille."))]


async def test_runtime_records_transcripts_only_when_asked(tmp_path: Path) -> None:
    request = BlendRequest(model="m", messages=(ChatMessage("user", "hi"),))
    served = Served(id="c1", request=request, text="hello", usage=Usage(), latency_s=0.1,
                    report=None)
    for keep in (False, True):
        store = await ExperimentStore.open(StoreConfig(
            url=sqlite_url(tmp_path / str(keep)), flush_interval_s=0.01,
            record_transcripts=keep))
        runtime = ExperimentRuntime(engine=None, store=store)  # type: ignore[arg-type]
        runtime.record(served)
        await store.flush()
        found = await store.transcripts()
        await runtime.aclose()
        assert found == ({"c1": TranscriptEvent("c1", [{"role": "user", "content": "hi"}],
                                                "hello", found["c1"].created_at)}
                         if keep else {})


def test_export_without_a_store_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("backends:\n  b: {kind: openai, base_url: 'http://127.0.0.1:18599/v1', "
                      "model: m}\n")
    assert main(["export-preferences", "--config", str(config), "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    assert "no experiment store" in capsys.readouterr().err
