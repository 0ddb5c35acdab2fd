"""Win rate, Wilson interval and the anytime-valid confidence sequence, on known fixtures."""

from __future__ import annotations

import math
import random

import pytest

from ensemble.experiments.stats import (
    confidence_sequence,
    percentile,
    wilson_interval,
    win_rate,
)


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    # Wilson (1927) intervals, z = 1.959964; values from statsmodels' proportion_confint.
    (0, 10, 0.0, 0.277533),
    (5, 10, 0.236593, 0.763407),
    (8, 10, 0.490162, 0.943318),
    (50, 100, 0.403832, 0.596168),
])
def test_wilson_interval_known_values(successes: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-6)


def test_win_rate_counts_ties_as_half() -> None:
    rate = win_rate(["win"] * 6 + ["tie"] * 2 + ["loss"] * 2)
    assert (rate.n, rate.wins, rate.ties, rate.losses) == (10, 6, 2, 2)
    assert rate.rate == pytest.approx(0.7)
    assert (rate.low, rate.high) == pytest.approx(wilson_interval(7, 10))


def test_no_verdicts_is_no_rate() -> None:
    rate = win_rate([])
    assert rate.n == 0 and rate.rate is None and not rate.decided


def test_confidence_sequence_formula_and_width() -> None:
    # Normal-mixture boundary with V = n/4, rho = 100/4, alpha = 0.05, at n = 100.
    v = rho = 25.0
    radius = math.sqrt((v + rho) * math.log((v + rho) / (rho * 0.05 ** 2))) / 100
    assert confidence_sequence(50, 100) == pytest.approx((0.5 - radius, 0.5 + radius))
    # Always wider than the fixed-n Wilson interval: it holds at every n at once.
    low, high = wilson_interval(50, 100)
    cs_low, cs_high = confidence_sequence(50, 100)
    assert cs_low < low and cs_high > high


def test_enough_evidence_flag() -> None:
    assert not win_rate(["win"] * 6 + ["loss"] * 4).decided  # 60% of 10: not yet
    strong = win_rate(["win"] * 80 + ["loss"] * 20)
    assert strong.decided and strong.better is True
    weak = win_rate(["loss"] * 80 + ["win"] * 20)
    assert weak.decided and weak.better is False


def test_flag_is_safe_under_continuous_monitoring() -> None:
    """With equal arms, peeking after every verdict rarely (<= alpha) ever claims evidence.

    A fixed-n Wilson interval checked after every verdict would claim it far more often."""
    rng = random.Random(7)
    runs, horizon, claimed, claimed_wilson = 200, 300, 0, 0
    for _ in range(runs):
        total, cs_fired, wilson_fired = 0, False, False
        for t in range(1, horizon + 1):
            total += rng.random() < 0.5
            lo, hi = confidence_sequence(total, t)
            cs_fired |= lo > 0.5 or hi < 0.5
            if t >= 10:
                wlo, whi = wilson_interval(total, t)
                wilson_fired |= wlo > 0.5 or whi < 0.5
        claimed += cs_fired
        claimed_wilson += wilson_fired
    assert claimed / runs <= 0.05
    assert claimed_wilson > claimed


def test_percentile_matches_numpy_linear() -> None:
    values = [0.1, 0.4, 0.2, 0.9, 0.3]
    assert percentile(values, 50) == pytest.approx(0.3)
    assert percentile(values, 95) == pytest.approx(0.8)
    assert percentile([], 50) is None
