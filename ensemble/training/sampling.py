"""Which candidate pairs of one example are trained on (LLM-Blender's ``sampling``, spec 1.5).

Per example, on the de-duplicated candidates (identical token ids count once, the first kept):

- ``all_pair``: the C(n, 2) pairs in a random order (``torch.randperm``), the first
  ``min(num_pos, num_neg)`` of them;
- ``top_bottom``: the ``min(num_pos, num_neg)`` best candidates paired with as many worst;

then each pair's left/right order is flipped with probability 0.5. The original draws from the
global torch RNG; here each example draws from its own generator, seeded by (run seed, epoch,
example index) (:func:`example_generator`): the same distribution, but a resumed run samples
exactly the pairs the interrupted one would have, whatever else used the global RNG (the data
loader collates a batch ahead of the step that is checkpointed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

SamplingMode = Literal["all_pair", "top_bottom"]


def unique_indices(candidate_ids: Sequence[Sequence[int]]) -> list[int]:
    """Indices of the first occurrence of each distinct candidate."""
    seen: set[tuple[int, ...]] = set()
    keep = []
    for index, ids in enumerate(candidate_ids):
        key = tuple(ids)
        if key not in seen:
            seen.add(key)
            keep.append(index)
    return keep


def example_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator one example samples from in one epoch."""
    return torch.Generator().manual_seed(hash((seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)


def sample_pairs(scores: Sequence[float], *, mode: SamplingMode, num_pos: int,
                 num_neg: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """(left, right) index pairs into ``scores`` (already de-duplicated), order shuffled."""
    n = len(scores)
    if n < 2:
        return []
    k = min(num_pos, num_neg)
    if mode == "all_pair":
        combinations = torch.combinations(torch.arange(n), r=2)  # [C(n,2), 2]
        chosen = combinations[torch.randperm(len(combinations), generator=generator)[:k]]
        left, right = chosen[:, 0], chosen[:, 1]
    elif mode == "top_bottom":
        # Stable order so equal scores keep their listing order on every machine.
        order = torch.argsort(torch.tensor(scores, dtype=torch.float64), descending=True,
                              stable=True)
        left, right = order[:k], order[-k:]
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    keep = torch.rand(len(left), generator=generator) < 0.5
    return [(int(a), int(b)) for a, b in zip(torch.where(keep, left, right),
                                              torch.where(keep, right, left), strict=True)]


def all_ordered_pairs(n: int) -> list[tuple[int, int]]:
    """Every ordered pair (i, j), i != j: the deterministic held-out rows (both orders)."""
    return [(i, j) for i in range(n) for j in range(n) if i != j]
