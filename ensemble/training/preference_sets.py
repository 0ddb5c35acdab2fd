"""Preference data for ranker training, read where it lies (never copied).

``load_examples("hh_rlhf,pandalm,my.jsonl", data_dir)`` accepts, comma-separated:

- the local sets under the data directory (``../shared/data`` by default, see
  :func:`ensemble.experiments.evaluation.datasets.data_dir`): ``hh_rlhf`` (harmless-base test:
  full transcripts, chosen/rejected differ in the last assistant turn), ``pandalm``
  (majority of three annotators; ties and three-way splits skipped), ``reward_bench`` (all
  four sections), ``autoj`` (ties skipped) and ``hhh``;
- a JSON-lines file whose lines are either chosen/rejected pairs or MixInstruct records:

  - ``{"prompt": str, "chosen": str, "rejected": str}`` (``instruction`` / ``input`` /
    ``source`` also name the prompt); ``chosen`` / ``rejected`` may be OpenAI message lists
    (the prompt is then every message but the last), and without a prompt two strings are
    read as Human/Assistant transcripts (HH-RLHF's layout);
  - MixInstruct: ``{"instruction", "input", "candidates": [{"text", "scores": {metric:
    value}}]}``; a candidate's score is the mean of the chosen ``metrics`` (default
    ``bartscore``, MixInstruct's and GenFuser's training metric).

Chats are rendered with :func:`ensemble.rankers.pairrm.inputs.chat_prompt`, the function the
gateway's ``pairrm`` ranker uses at serving time, so training and serving see the same text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ensemble.errors import ConfigError
from ensemble.experiments.evaluation.datasets import _jsonl, _read, load_autoj, load_hhh
from ensemble.rankers.pairrm.inputs import chat_prompt
from ensemble.training.examples import RankingExample
from ensemble.types import ChatMessage

DEFAULT_METRICS = ("bartscore",)
_TURN = re.compile(r"\n\n(Human|Assistant): ")


def load_examples(spec: str, directory: Path, *,
                  metrics: Sequence[str] = DEFAULT_METRICS) -> list[RankingExample]:
    """Every example of every comma-separated set or file in ``spec``, in order."""
    examples: list[RankingExample] = []
    for name in (part.strip() for part in spec.split(",")):
        if not name:
            continue
        loader = NAMED_SETS.get(name)
        if loader is not None:
            examples += loader(directory)
        elif Path(name).is_file():
            examples += load_jsonl(Path(name), metrics=metrics)
        else:
            raise ConfigError(f"no preference set {name!r}: not a file, and not one of "
                              f"{sorted(NAMED_SETS)}", key="--data")
    return [e for e in examples if e.decisive and len(e.candidates) >= 2]


def chat_example(messages: Sequence[ChatMessage], replies: Sequence[str],
                 scores: Sequence[float], origin: str) -> RankingExample:
    """Render a chat and its candidate replies as the gateway's PairRM ranker sees them."""
    prompt = chat_prompt(messages)
    return RankingExample(prompt.source, tuple(prompt.candidate(r) for r in replies),
                          tuple(float(s) for s in scores), origin)


def single_turn(prompt: str, chosen: str, rejected: str, origin: str) -> RankingExample:
    return chat_example((ChatMessage("user", prompt),), (chosen, rejected), (1.0, 0.0), origin)


# ----------------------------------------------------------------------------- named sets


def load_hh_rlhf(directory: Path) -> list[RankingExample]:
    path = directory / "hh_rlhf" / "harmless-base" / "test.jsonl.gz"
    return [e for r in _jsonl(path) if (e := transcript_pair(r["chosen"], r["rejected"],
                                                                "hh_rlhf")) is not None]


def transcript_pair(chosen: str, rejected: str, origin: str) -> RankingExample | None:
    """Two Human/Assistant transcripts that share all but the last assistant turn."""
    good, bad = parse_transcript(chosen), parse_transcript(rejected)
    if not good or not bad or good[-1].role != "assistant" or bad[-1].role != "assistant":
        return None
    if good[:-1] != bad[:-1]:
        return None  # not one conversation with two endings
    return chat_example(good[:-1], (good[-1].content, bad[-1].content), (1.0, 0.0), origin)


def parse_transcript(text: str) -> list[ChatMessage]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> [user a, assistant b]."""
    parts = _TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    roles = {"Human": "user", "Assistant": "assistant"}
    return [ChatMessage(roles[parts[i]], parts[i + 1].strip())  # type: ignore[arg-type]
            for i in range(1, len(parts) - 1, 2)]


def load_pandalm(directory: Path) -> list[RankingExample]:
    """Majority label of three annotators: 1 = response1 better, 2 = response2, 0 = tie."""
    examples = []
    for record in json.loads(_read(directory / "pandalm_testset" / "testset-v1.json")):
        votes = Counter(record[f"annotator{i}"] for i in (1, 2, 3))
        label, count = votes.most_common(1)[0]
        if count < 2 or label not in (1, 2):
            continue
        prompt = "\n".join(p for p in (record["instruction"], record["input"]) if p)
        # A few responses are JSON literals (true), not strings: PairRM reads their text.
        first, second = str(record["response1"]), str(record["response2"])
        chosen, rejected = (first, second) if label == 1 else (second, first)
        examples.append(single_turn(prompt, chosen, rejected, "pandalm"))
    return examples


def load_reward_bench(directory: Path) -> list[RankingExample]:
    sections = ("Chat", "Chat_Hard", "Safety", "Reasoning")
    return [single_turn(r["prompt"], r["chosen"], r["rejected"], "reward_bench")
            for section in sections
            for r in _jsonl(directory / "reward_bench" / f"{section}.jsonl.gz")]


def load_autoj_pairs(directory: Path) -> list[RankingExample]:
    return [single_turn(p.prompt, *((p.a, p.b) if p.label == "a" else (p.b, p.a)), "autoj")
            for p in load_autoj(directory) if p.label != "tie"]


def load_hhh_pairs(directory: Path) -> list[RankingExample]:
    return [single_turn(p.prompt, p.a, p.b, "hhh") for p in load_hhh(directory)]


NAMED_SETS: dict[str, Callable[[Path], list[RankingExample]]] = {
    "hh_rlhf": load_hh_rlhf, "pandalm": load_pandalm, "reward_bench": load_reward_bench,
    "autoj": load_autoj_pairs, "hhh": load_hhh_pairs,
}


# ----------------------------------------------------------------------------- files


def load_jsonl(path: Path, *, metrics: Sequence[str] = DEFAULT_METRICS) -> list[RankingExample]:
    """A JSON-lines file of chosen/rejected pairs or MixInstruct records (one kind a line)."""
    examples = []
    for number, record in enumerate(read_records(path), start=1):
        try:
            example = (mixinstruct_example(record, metrics, path.name) if "candidates" in record
                       else pair_example(record, path.name))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: line {number}: {exc}", key="--data") from exc
        if example is not None:
            examples.append(example)
    return examples


def read_records(path: Path) -> Iterable[dict[str, Any]]:
    """A ``.json`` array or JSON lines (MixInstruct ships JSON arrays)."""
    if path.suffix == ".json":
        yield from json.loads(_read(path))  # MixInstruct's own files are JSON arrays
    else:
        yield from _jsonl(path)


def pair_example(record: dict[str, Any], origin: str) -> RankingExample | None:
    chosen, rejected = record["chosen"], record["rejected"]
    if isinstance(chosen, list) and isinstance(rejected, list):
        good, bad = _messages(chosen), _messages(rejected)
        return chat_example(good[:-1], (good[-1].content, bad[-1].content), (1.0, 0.0), origin)
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise TypeError("chosen / rejected must both be strings or both message lists")
    prompt = _prompt(record)
    if prompt is None:
        return transcript_pair(chosen, rejected, origin)
    return single_turn(prompt, chosen, rejected, origin)


def _prompt(record: dict[str, Any]) -> str | None:
    if isinstance(record.get("source"), str):
        return str(record["source"])
    if isinstance(record.get("prompt"), str):
        return str(record["prompt"])
    parts = [record.get("instruction"), record.get("input")]
    text = "\n".join(p for p in parts if isinstance(p, str) and p)
    return text or None


def _messages(items: list[dict[str, Any]]) -> list[ChatMessage]:
    if not items:
        raise ValueError("empty message list")
    return [ChatMessage(m["role"], str(m["content"])) for m in items]


def mixinstruct_example(record: dict[str, Any], metrics: Sequence[str],
                        origin: str) -> RankingExample:
    """LLM-Blender's source (instruction + input, no separator) and raw candidate texts."""
    candidates = record["candidates"]
    scores = []
    for candidate in candidates:
        values = candidate["scores"]
        missing = [m for m in metrics if m not in values]
        if missing:
            raise ValueError(f"candidate has no score {missing} (has {sorted(values)})")
        scores.append(sum(float(values[m]) for m in metrics) / len(metrics))
    source = (record.get("instruction") or "") + (record.get("input") or "")
    return RankingExample(source, tuple(str(c["text"]) for c in candidates), tuple(scores),
                          origin)
