"""Downstream code of the kind TRL's former ``PairRMJudge`` was (trl/trainer/judges.py,
removed with TRL's llm-blender dependency), written against ``llm_blender`` and left as such
code is: it imports ``llm_blender``, loads ``"llm-blender/PairRM"`` on
``Accelerator().device`` and calls ``rank(prompts, completions, return_scores=...,
disable_tqdm=True)``, then post-processes the numpy array in place (``-=``, ``/=``, fancy
indexing), which only works if ``rank`` returns what LLM-Blender's did.
"""

from __future__ import annotations

import llm_blender
import numpy as np
from accelerate import Accelerator


class PairRMJudge:
    """Pairwise judge: 0 when the first completion of a pair is preferred, else 1."""

    def __init__(self) -> None:
        self.blender = llm_blender.Blender()
        self.blender.loadranker("llm-blender/PairRM", device=Accelerator().device)

    def judge(self, prompts: list[str], completions: list[list[str]], shuffle_order: bool = True,
              return_scores: bool = False, temperature: float = 1.0) -> list[int | float]:
        if len(completions[0]) != 2:
            raise ValueError("PairRM judge requires exactly 2 completions per prompt.")
        if shuffle_order:
            flip_mask = np.random.choice([True, False], size=len(prompts))
            completions = [pair[::-1] if flip else pair
                           for flip, pair in zip(flip_mask, completions, strict=True)]
        ranks = self.blender.rank(prompts, completions, return_scores=return_scores,
                                  disable_tqdm=True)
        if not return_scores:
            ranks -= 1  # 1-based ranks -> 0 = first completion preferred
        else:
            ranks /= temperature
        if shuffle_order:
            ranks[flip_mask] = ranks[flip_mask][:, ::-1]
        if return_scores:
            shifted = np.exp(ranks - np.amax(ranks, axis=-1, keepdims=True))
            probs = shifted / np.sum(shifted, axis=-1, keepdims=True)
            return list(probs[:, 0].tolist())
        return list(ranks[:, 0].tolist())
