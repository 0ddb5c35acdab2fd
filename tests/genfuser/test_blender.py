"""``ensemble.Blender`` (PairRM, tiny) + GenFuser (tiny): the original rank_and_fuse flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ensemble import Blender
from tests.pairrm.conftest import tiny_checkpoints, tiny_pairrm_hf_dir  # noqa: F401 (fixtures)

INPUTS = ["hello, how are you!", "I love you!"]
CANDIDATES = [["get out!", "hi! I am fine, thanks!", "bye!"],
              ["I love you too!", "I hate you!", "Thanks! You're a good guy!"]]


def test_rank_and_fuse_on_the_blender(tiny_pairrm_hf_dir: Path,  # noqa: F811
                                      tiny_fuser_dir: Path) -> None:
    blender = Blender()
    blender.loadranker(str(tiny_pairrm_hf_dir), device="cpu")
    blender.loadfuser(str(tiny_fuser_dir), device="cpu")
    ranks = blender.rank(INPUTS, CANDIDATES, batch_size=4)
    top = blender.get_topk_candidates_from_ranks(ranks, CANDIDATES, top_k=2)
    expected = blender.fuse(INPUTS, top.tolist(), max_new_tokens=6)

    fused, got_ranks = blender.rank_and_fuse(INPUTS, CANDIDATES, top_k=2, max_new_tokens=6)
    assert np.array_equal(got_ranks, ranks) and fused == expected and all(fused)

    fused_s, scores = blender.rank_and_fuse(INPUTS, CANDIDATES, return_scores=True, top_k=2,
                                            max_new_tokens=6)
    assert scores.dtype == np.float32
    by_score = blender.get_topk_candidates_from_ranks(-scores, CANDIDATES, top_k=2)
    assert fused_s == blender.fuse(INPUTS, by_score.tolist(), max_new_tokens=6)
