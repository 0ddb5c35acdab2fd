"""Sticky weighted assignment of users to arms.

The key (the request's ``user``, a header, or a random token) is hashed with the experiment id
by SHA-256 into a number u in [0, 1); the arm whose cumulative weight share first exceeds u
serves. The same key always lands in the same arm while the weights stay the same, and two
experiments split the same users independently. Changing the weights moves only the users whose
u falls in the part of [0, 1) that changed hands.
"""

from __future__ import annotations

import hashlib
import secrets

from ensemble.config import ArmConfig, ExperimentConfig

_SCALE = float(1 << 64)


def unit_hash(experiment_id: str, key: str) -> float:
    """A uniform number in [0, 1) determined by (experiment, key)."""
    digest = hashlib.sha256(f"{experiment_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose_arm(experiment: ExperimentConfig, key: str | None) -> ArmConfig:
    """The arm that serves ``key``; a missing key gets a fresh random draw (not sticky)."""
    u = unit_hash(experiment.id, key if key else secrets.token_hex(16))
    total = sum(arm.weight for arm in experiment.arms)
    cumulative = 0.0
    live = [arm for arm in experiment.arms if arm.weight > 0]
    for arm in live:
        cumulative += arm.weight / total
        if u < cumulative:
            return arm
    return live[-1]  # u just under 1 with rounding in the cumulative sum
