"""Weighted, sticky assignment over thousands of simulated users."""

from __future__ import annotations

import math
from collections import Counter

from ensemble.config import ExperimentConfig
from ensemble.experiments.split import choose_arm, unit_hash

USERS = 4000


def experiment(weights: dict[str, float], eid: str = "assistant") -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "id": eid, "arms": [{"name": n, "model": n, "weight": w} for n, w in weights.items()]})


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_split_ratios_follow_the_weights() -> None:
    exp = experiment({"blend": 3, "single": 1})
    counts = Counter(choose_arm(exp, f"user-{i}").name for i in range(USERS))
    assert within_binomial(counts["blend"], USERS, 0.75), counts
    assert counts["blend"] + counts["single"] == USERS


def test_three_arms_and_a_zero_weight_arm() -> None:
    exp = experiment({"a": 1, "b": 1, "c": 2, "shadow-only": 0})
    counts = Counter(choose_arm(exp, f"u{i}").name for i in range(USERS))
    assert counts["shadow-only"] == 0
    for arm, p in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        assert within_binomial(counts[arm], USERS, p), counts


def test_assignment_is_sticky_per_user() -> None:
    exp = experiment({"blend": 1, "single": 1})
    first = [choose_arm(exp, f"user-{i}").name for i in range(USERS)]
    again = [choose_arm(exp, f"user-{i}").name for i in range(USERS)]
    assert first == again


def test_no_key_draws_at_random_each_time() -> None:
    exp = experiment({"blend": 1, "single": 1})
    counts = Counter(choose_arm(exp, None).name for _ in range(2000))
    assert within_binomial(counts["blend"], 2000, 0.5), counts


def test_weight_change_moves_only_the_users_it_must() -> None:
    before = experiment({"blend": 1, "single": 1})
    after = experiment({"blend": 3, "single": 1})
    moved = [i for i in range(USERS)
             if choose_arm(before, f"u{i}").name != choose_arm(after, f"u{i}").name]
    # Only single -> blend moves, for a quarter of the users.
    assert all(choose_arm(before, f"u{i}").name == "single" for i in moved)
    assert within_binomial(len(moved), USERS, 0.25), len(moved)


def test_experiments_split_independently() -> None:
    assert unit_hash("exp-1", "alice") != unit_hash("exp-2", "alice")
    one, two = experiment({"a": 1, "b": 1}, "one"), experiment({"a": 1, "b": 1}, "two")
    same = sum(choose_arm(one, f"u{i}").name == choose_arm(two, f"u{i}").name
               for i in range(USERS))
    assert within_binomial(same, USERS, 0.5), same
