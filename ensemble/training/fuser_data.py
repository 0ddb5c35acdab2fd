"""GenFuser training examples from MixInstruct-format records (spec 4.1, 4.2).

A record is ``{"instruction", "input", "output", "candidates": [{"text", "scores"}]}``.
The fuser's input is the serving prompt (:func:`ensemble.fusers.genfuser.prompt.encode_input`:
candidates cut to 128 tokens with ``...``, the whole window 1024 tokens) over the record's
``top_k`` best candidates by the chosen metrics (the original's data: the top 3 by
bartscore, best first). The target is ``output`` cut to 128 tokens. As in the original's
training tokenization, EOS ends both the input (within the window) and the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ensemble.errors import ConfigError
from ensemble.fusers.genfuser.prompt import CANDIDATE_MAX_LENGTH, MAX_LENGTH, encode_input
from ensemble.training.preference_sets import DEFAULT_METRICS, read_records

TARGET_MAX_LENGTH = 128  # the original's max target length


@dataclass(frozen=True)
class FuserExample:
    instruction: str
    input: str
    candidates: tuple[str, ...]  # best first
    output: str


def fuser_examples(path: Path, *, top_k: int = 3,
                   metrics: Sequence[str] = DEFAULT_METRICS) -> list[FuserExample]:
    """The records of a MixInstruct JSON / JSONL file, top ``top_k`` candidates each."""
    examples = []
    for number, record in enumerate(read_records(path), start=1):
        try:
            examples.append(fuser_example(record, top_k, metrics))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: record {number}: {exc}", key="--data") from exc
    return examples


def fuser_example(record: dict[str, Any], top_k: int, metrics: Sequence[str]) -> FuserExample:
    output = record["output"]
    if not isinstance(output, str) or not output:
        raise ValueError("no target text in 'output'")

    def score(candidate: dict[str, Any]) -> float:
        values = candidate["scores"]
        return sum(float(values[m]) for m in metrics) / len(metrics)

    # sorted() is stable: equal scores keep the file's order on every machine.
    ranked = sorted(record["candidates"], key=score, reverse=True)
    return FuserExample(str(record.get("instruction") or ""), str(record.get("input") or ""),
                        tuple(str(c["text"]) for c in ranked[:top_k]), output)


class FuserDataset(Dataset[dict[str, list[int]]]):
    """Token ids per example: ``input_ids`` and ``labels`` (the collator pads them)."""

    def __init__(self, tokenizer: Any, examples: Sequence[FuserExample], *,
                 candidate_max_length: int = CANDIDATE_MAX_LENGTH, max_length: int = MAX_LENGTH,
                 target_max_length: int = TARGET_MAX_LENGTH) -> None:
        eos = int(tokenizer.eos_token_id)
        self.items = []
        for example in examples:
            prompt = encode_input(tokenizer, example.instruction, example.input,
                                  example.candidates, candidate_max_length=candidate_max_length,
                                  max_length=max_length - 1)
            target = tokenizer.encode(example.output, add_special_tokens=False)
            self.items.append({"input_ids": [*prompt.input_ids, eos],
                               "labels": [*target[: target_max_length - 1], eos]})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]
