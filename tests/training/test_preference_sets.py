"""Preference loaders: JSONL pairs in three shapes, MixInstruct records, the local sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ensemble.errors import ConfigError
from ensemble.experiments.evaluation.datasets import data_dir
from ensemble.training.preference_sets import load_examples, load_jsonl

SHARED = data_dir("/work/shared/data") if Path("/work/shared/data").is_dir() else data_dir()


def write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_pairs_with_prompt_messages_or_transcripts(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.jsonl", [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        {"instruction": "Translate", "input": "chat", "chosen": "cat", "rejected": "dog"},
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}]},
        {"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: good",
         "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: bad"},
    ])
    examples = load_jsonl(path)
    assert [(e.source, e.candidates, e.scores) for e in examples[:3]] == [
        ("2+2?", ("4", "5"), (1.0, 0.0)), ("Translate\nchat", ("cat", "dog"), (1.0, 0.0)),
        ("hi", ("hello", "go"), (1.0, 0.0))]
    transcript = examples[3]  # multi-turn: the gateway's conversation template
    assert "USER: a\nAssistant: <Response 1>\nUSER: c" in transcript.source
    assert transcript.candidates == ("<Response 1>: b\n<Response 2>: good",
                                     "<Response 1>: b\n<Response 2>: bad")


def test_mixinstruct_records_average_the_chosen_metrics(tmp_path: Path) -> None:
    record = {"id": "x/1", "instruction": "Say hi. ", "input": "Now.", "output": "hi",
              "candidates": [
                  {"model": "a", "decoding_method": "top_p_sampling", "text": "hi",
                   "scores": {"bartscore": -1.0, "bleu": 30.0}},
                  {"model": "b", "decoding_method": "top_p_sampling", "text": "bye",
                   "scores": {"bartscore": -3.0, "bleu": 50.0}},
                  {"model": "c", "decoding_method": "top_p_sampling", "text": "yo",
                   "scores": {"bartscore": -2.0, "bleu": 10.0}}]}
    path = write(tmp_path / "mix.jsonl", [record])
    [example] = load_jsonl(path)
    assert example.source == "Say hi. Now."  # instruction + input, no separator (LLM-Blender)
    assert example.candidates == ("hi", "bye", "yo") and example.scores == (-1.0, -3.0, -2.0)
    [mean] = load_jsonl(path, metrics=("bartscore", "bleu"))
    assert mean.scores == (14.5, 23.5, 4.0)
    with pytest.raises(ConfigError, match="line 1: .*rouge"):
        load_jsonl(path, metrics=("rouge",))


def test_unknown_sets_and_ties_are_handled(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no preference set 'nope'"):
        load_examples("nope", tmp_path)
    path = write(tmp_path / "tie.jsonl", [{"prompt": "p", "chosen": "same", "rejected": "x"},
                                          {"instruction": "q", "candidates": [
                                              {"text": "a", "scores": {"bartscore": 1.0}},
                                              {"text": "b", "scores": {"bartscore": 1.0}}]}])
    assert len(load_examples(str(path), tmp_path)) == 1  # the all-tie record carries nothing


@pytest.mark.skipif(not (SHARED / "hhh_alignment").is_dir(), reason="no local data sets")
def test_local_sets_load_with_their_documented_sizes() -> None:
    sets = {name: load_examples(name, SHARED)
            for name in ("hh_rlhf", "pandalm", "reward_bench", "autoj", "hhh")}
    sizes = {name: len(examples) for name, examples in sets.items()}
    assert all(isinstance(text, str) for examples in sets.values() for e in examples
               for text in (e.source, *e.candidates))
    # hh_rlhf: 2312 pairs, 5 whose two transcripts differ before the last turn;
    # PandaLM: the 894 non-tie majorities; Auto-J: 1392 less 373 ties.
    assert sizes == {"hh_rlhf": 2307, "pandalm": 894, "reward_bench": 2985, "autoj": 1019,
                     "hhh": 221}
