"""Ranking examples as PairRM token rows for ``Trainer`` (the serving code's own row builder).

Each example is tokenized once (:class:`EncodedExample`), with the same hygiene, prefixes and
truncation as :func:`ensemble.rankers.pairrm.scoring.encode_pair_rows`. The collator then
samples pairs (training items) or takes every ordered pair (held-out items, so evaluation
needs no randomness), builds rows with
:func:`ensemble.rankers.pairrm.inputs.pair_row` and pads them; labels are
``sign(score_left - score_right)``.

An example whose candidates are identical once cut to the row limits is dropped: no row can
tell them apart (multi-turn chats whose answers differ only past the limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ensemble.rankers.pairrm.inputs import (
    CANDIDATE_TOKEN,
    SOURCE_TOKEN,
    candidate_budget,
    encode_segments,
    neutralise,
    pad_rows,
    pair_row,
    truncate_segment,
)
from ensemble.rankers.pairrm.scoring import PairRM
from ensemble.training.examples import RankingExample
from ensemble.training.sampling import (
    SamplingMode,
    all_ordered_pairs,
    example_generator,
    sample_pairs,
    unique_indices,
)


@dataclass(frozen=True)
class EncodedExample:
    source: tuple[int, ...]  # [CLS] <|source|> ... [SEP], cut to source_max_length
    candidates: tuple[tuple[int, ...], ...]  # distinct, [CLS] <|candidate|> ... [SEP], cut
    scores: tuple[float, ...]
    index: int = 0  # in its data set: with the epoch, seeds its pair sampling
    held_out: bool = False  # rows: every ordered pair instead of a sample


class RankingDataset(Dataset[EncodedExample]):
    """Encoded examples; ``dropped`` counts those that no row could tell apart."""

    def __init__(self, pairrm: PairRM, examples: Sequence[RankingExample], *,
                 held_out: bool = False) -> None:
        self.items: list[EncodedExample] = []
        self.dropped = 0
        for example in examples:
            encoded = encode_example(pairrm, example, index=len(self.items), held_out=held_out)
            if encoded is None:
                self.dropped += 1
            else:
                self.items.append(encoded)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EncodedExample:
        return self.items[index]


def encode_example(pairrm: PairRM, example: RankingExample, *, index: int = 0,
                   held_out: bool = False) -> EncodedExample | None:
    """Tokenize and cut one example; None when fewer than two distinct scores survive."""
    tokenizer = pairrm.tokenizer
    [source] = encode_segments(tokenizer, [neutralise(example.source, pairrm.reserved)],
                               SOURCE_TOKEN)
    source = truncate_segment(source, pairrm.source_max_length)
    budget = candidate_budget(len(source), pairrm.source_max_length,
                              pairrm.candidate_max_length)
    texts = [neutralise(c, pairrm.reserved) for c in example.candidates]
    candidates = [truncate_segment(ids, budget)
                  for ids in encode_segments(tokenizer, texts, CANDIDATE_TOKEN)]
    keep = unique_indices(candidates)
    scores = tuple(example.scores[i] for i in keep)
    if len(set(scores)) < 2:
        return None
    return EncodedExample(tuple(source), tuple(tuple(candidates[i]) for i in keep), scores,
                          index, held_out)


@dataclass
class SamplingClock:
    """The epoch the trainer is in (set by :class:`EpochClock` at each epoch's start)."""

    epoch: int = 0


class EpochClock(TrainerCallback):
    def __init__(self, clock: SamplingClock) -> None:
        self.clock = clock

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        self.clock.epoch = int(state.epoch or 0)  # a resumed run starts mid-epoch


@dataclass(frozen=True)
class PairCollator:
    """Examples -> ``{input_ids, attention_mask, labels}`` for :class:`PairwiseObjective`."""

    pairrm: PairRM
    mode: SamplingMode = "all_pair"
    num_pos: int = 5
    num_neg: int = 5
    seed: int = 42
    clock: SamplingClock = field(default_factory=SamplingClock)

    def __call__(self, batch: Sequence[EncodedExample]) -> dict[str, torch.Tensor]:
        rows: list[list[int]] = []
        labels: list[float] = []
        for item in batch:
            pairs = (all_ordered_pairs(len(item.scores)) if item.held_out else
                     sample_pairs(item.scores, mode=self.mode, num_pos=self.num_pos,
                                  num_neg=self.num_neg, generator=example_generator(
                                      self.seed, self.clock.epoch, item.index)))
            for left, right in pairs:
                rows.append(pair_row(
                    item.source, item.candidates[left], item.candidates[right],
                    self.pairrm.prefix_ids, source_max_length=self.pairrm.source_max_length,
                    candidate_max_length=self.pairrm.candidate_max_length))
                difference = item.scores[left] - item.scores[right]
                labels.append(float((difference > 0) - (difference < 0)))
        ids, mask = pad_rows(rows, self.pairrm.tokenizer.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.tensor(labels, dtype=torch.float32)}
