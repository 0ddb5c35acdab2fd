"""LLM-Blender's pair sampling and instructgpt loss (spec 1.5)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ensemble.training.objective import instructgpt_loss, pair_accuracy
from ensemble.training.sampling import (
    all_ordered_pairs,
    example_generator,
    sample_pairs,
    unique_indices,
)

SCORES = [0.1, 0.9, 0.5, 0.3, 0.7, 0.2]


def test_all_pair_takes_min_pos_neg_distinct_pairs() -> None:
    pairs = sample_pairs(SCORES, mode="all_pair", num_pos=5, num_neg=3,
                         generator=example_generator(1, 0, 0))
    assert len(pairs) == 3
    assert len({frozenset(p) for p in pairs}) == 3 and all(a != b for a, b in pairs)


def test_top_bottom_pairs_best_with_worst() -> None:
    pairs = sample_pairs(SCORES, mode="top_bottom", num_pos=2, num_neg=2,
                         generator=example_generator(1, 0, 0))
    # sorted: 1, 4, 2, 3, 5, 0 -> top [1, 4] against bottom [5, 0], position by position
    assert {frozenset(p) for p in pairs} == {frozenset({1, 5}), frozenset({4, 0})}


def test_both_orders_are_drawn_and_seeded_draws_repeat() -> None:
    lefts = [sample_pairs([1.0, 0.0], mode="all_pair", num_pos=5, num_neg=5,
                          generator=example_generator(7, 0, i))[0][0] for i in range(200)]
    assert 60 < sum(lefts) < 140  # chosen (index 0) is on the right about half the time
    again = [sample_pairs([1.0, 0.0], mode="all_pair", num_pos=5, num_neg=5,
                          generator=example_generator(7, 0, i))[0][0] for i in range(200)]
    assert lefts == again


def test_duplicates_count_once_and_held_out_rows_are_every_ordered_pair() -> None:
    assert unique_indices([[1, 2], [3], [1, 2], [4]]) == [0, 1, 3]
    assert all_ordered_pairs(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert sample_pairs([1.0], mode="all_pair", num_pos=5, num_neg=5,
                        generator=example_generator(0, 0, 0)) == []


def test_instructgpt_loss_is_bradley_terry_and_ties_carry_no_gradient() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)
    signs = torch.tensor([1.0, 1.0, 0.0])
    loss = instructgpt_loss(logits, signs)
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0)) + math.log(2)) / 3
    assert abs(loss.item() - expected) < 1e-6
    loss.backward()
    assert logits.grad is not None and logits.grad[2].item() == 0.0


def test_pair_accuracy_ignores_ties_and_counts_zero_logits_wrong() -> None:
    assert pair_accuracy(np.array([1.0, -2.0, 0.0, 3.0]), np.array([1.0, 1.0, 1.0, 0.0])) == (
        1 / 3)
