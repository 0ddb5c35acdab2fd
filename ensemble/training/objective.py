"""LLM-Blender's "instructgpt" ranking loss and the pairwise accuracy reported with it."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional


def instructgpt_loss(logits: torch.Tensor, label_signs: torch.Tensor) -> torch.Tensor:
    """mean(-log sigmoid(sign(score_left - score_right) * logit)) over pair rows.

    Bradley-Terry on the pairwise logit; a tie (sign 0) contributes the constant log 2 and no
    gradient, as in the original. ``logsigmoid`` is the same function, stable for large logits.
    """
    return -functional.logsigmoid(label_signs.to(logits.dtype) * logits).mean()


def pair_accuracy(logits: np.ndarray, label_signs: np.ndarray) -> float:
    """Share of non-tie rows whose logit has the label's sign (a zero logit is wrong)."""
    decided = label_signs != 0
    if not decided.any():
        return float("nan")
    return float((np.sign(logits[decided]) == np.sign(label_signs[decided])).mean())
