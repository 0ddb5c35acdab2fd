"""Win rates with intervals, and a sequential-testing-safe "enough evidence yet?" flag.

A verdict counts 1 for a win, 1/2 for a tie and 0 for a loss; the win rate is their mean.

* **Wilson score interval** (Wilson 1927) at level 1 - alpha, for reporting: with statsmodels
  when it is installed (``proportion_confint(method="wilson")``), else the formula below (the
  same numbers). A tie, worth 1/2, is counted as half a success of a trial.
* **Paired bootstrap interval** (``bootstrap_interval``) for a win rate over one shared set of
  prompts, such as the policies of ``blendgate eval --pool``: each prompt's verdict is already a
  paired comparison (two answers to the same prompt), and resampling prompts keeps the pairs.
  Percentile interval of ``scipy.stats.bootstrap``, seeded.
* **Anytime-valid confidence sequence** for the "enough evidence" flag: the two-sided normal
  mixture boundary of Robbins (1970) as given by Howard, Ramdas, McAuliffe & Sekhon (2021,
  "Time-uniform, nonparametric, nonasymptotic confidence sequences", eq. (14)). Verdicts are in
  [0, 1], hence 1/2-sub-Gaussian; with S_t the sum of (x_i - mu) and V_t = t/4,
  ``P(exists t: |S_t| >= sqrt((V_t + rho) log((V_t + rho) / (rho alpha^2)))) <= alpha``.
  The interval holds simultaneously at every t, so the flag may be looked at after every
  request (the dashboard does) without inflating the error rate, unlike a Wilson interval
  re-checked as data arrive. ``rho`` tunes where the boundary is tightest; it is set for
  ``RHO_SAMPLES`` = 100 verdicts. The flag says "enough evidence" once the sequence excludes 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

RHO_SAMPLES = 100
_SUB_GAUSSIAN_VARIANCE = 0.25  # any distribution on [0, 1]
_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: int
    ties: int
    losses: int
    rate: float | None  # (wins + ties / 2) / n
    low: float | None  # Wilson interval
    high: float | None
    cs_low: float | None  # anytime-valid confidence sequence at the last verdict
    cs_high: float | None
    decided: bool  # the confidence sequence excludes 1/2: enough evidence either way
    better: bool | None  # when decided: is this arm the better one?


def wilson_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (successes may be fractional)."""
    if n <= 0:
        raise ValueError("n must be positive")
    try:
        from statsmodels.stats.proportion import proportion_confint
    except ImportError:
        pass
    else:
        low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
        return float(low), float(high)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def confidence_sequence(total: float, n: int, alpha: float = 0.05,
                        rho_samples: int = RHO_SAMPLES) -> tuple[float, float]:
    """Anytime-valid interval for the mean of n values in [0, 1] summing to ``total``."""
    if n <= 0:
        raise ValueError("n must be positive")
    rho = _SUB_GAUSSIAN_VARIANCE * rho_samples
    v = _SUB_GAUSSIAN_VARIANCE * n
    radius = math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha * alpha))) / n
    mean = total / n
    return max(0.0, mean - radius), min(1.0, mean + radius)


def win_rate(outcomes: Iterable[str], alpha: float = 0.05) -> WinRate:
    values = list(outcomes)
    wins, ties, losses = (values.count(o) for o in ("win", "tie", "loss"))
    n = len(values)
    if n == 0:
        return WinRate(0, 0, 0, 0, None, None, None, None, None, False, None)
    total = sum(_VALUE[o] for o in values)
    low, high = wilson_interval(total, n, alpha)
    cs_low, cs_high = confidence_sequence(total, n, alpha)
    decided = cs_low > 0.5 or cs_high < 0.5
    return WinRate(n, wins, ties, losses, total / n, low, high, cs_low, cs_high, decided,
                   (cs_low > 0.5) if decided else None)


def verdict_value(outcome: str) -> float:
    """A verdict as a number: 1 for a win, 1/2 for a tie, 0 for a loss."""
    return _VALUE[outcome]


def bootstrap_interval(values: Sequence[float], *, seed: int = 0, alpha: float = 0.05,
                       resamples: int = 10_000) -> tuple[float, float] | None:
    """Percentile bootstrap interval at level 1 - alpha for the mean of ``values`` (one per
    prompt); None for no values. Rounded to 6 digits, so float noise never moves a bound."""
    if not values:
        return None
    if min(values) == max(values):  # every resample has the same mean
        return float(values[0]), float(values[0])
    import numpy as np
    from scipy.stats import bootstrap

    result = bootstrap((np.asarray(values, dtype=float),), np.mean, confidence_level=1 - alpha,
                       n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return round(float(interval.low), 6), round(float(interval.high), 6)


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)
