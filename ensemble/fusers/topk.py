"""Pick the top-k candidates of each input from their ranks (LLM-Blender spec §3.8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def get_topk_candidates_from_ranks(
    ranks: npt.ArrayLike, candidates: Sequence[Sequence[str]], top_k: int | None
) -> npt.NDArray[np.str_]:
    """Candidates ordered by ascending rank (1 = best), the first ``top_k`` per row.

    Returns a numpy string array ``[N, k]`` (``k = min(top_k, n)``; ``None`` keeps all).
    Rows must be rectangular. Equal ranks keep the original order (stable sort; the original
    uses numpy's default quicksort, which agrees for the small n used here but does not
    promise it).
    """
    rank_array = np.asarray(ranks)
    cand_array = np.asarray([list(row) for row in candidates], dtype=np.str_)
    if rank_array.ndim != 2 or rank_array.shape != cand_array.shape:
        raise ValueError(
            f"ranks {rank_array.shape} and candidates {cand_array.shape} must both be [N, n]"
        )
    order = np.argsort(rank_array, axis=1, kind="stable")[:, :top_k]
    return cand_array[np.arange(len(cand_array))[:, None], order]
