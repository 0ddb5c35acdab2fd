"""Scores -> competition ranks ("1224" ranking): the one rank rule of every ranker."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def ranks_from_scores(scores: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Competition ranks, int32, same shape (1-D, or 2-D: one ranking per row): rank 1 = the
    highest score; ties share the best rank and leave a gap after them. Scores are compared
    exactly, so equal scores always tie (rankers round noisy scores before ranking).

    >>> ranks_from_scores([1.0, 2.0, 2.0, 0.0]).tolist()
    [3, 1, 1, 4]
    """
    s = np.asarray(scores)
    if s.ndim not in (1, 2):
        raise ValueError(f"scores must be 1-D or 2-D, got shape {s.shape}")
    better = s[..., None, :] > s[..., :, None]  # [..., j, k]: s_k > s_j
    ranks: npt.NDArray[np.int32] = (1 + better.sum(axis=-1)).astype(np.int32)
    return ranks
