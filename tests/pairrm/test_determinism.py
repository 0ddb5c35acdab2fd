"""Exact ties and exact antisymmetry, whatever the CPU and the batch composition.

On some CPUs (seen on AMD EPYC) two identical rows of one forward pass differ by ~2e-7, and a
row's logit moves with its position in the batch. Every test here runs twice: on the model as
it is, and with a forward hook that adds position-dependent noise (1e-6 x the row's index in its
batch), which makes that CPU behaviour happen on every machine. Only results that do not depend
on such noise may hold: ties of identical texts stay exact, swapping A and B negates exactly,
and the order the caller lists pairs in changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ensemble.compat.blender import Blender
from ensemble.config import PairRMRankerConfig
from ensemble.rankers.pairrm import PairRM, PairRMRanker, bubble_select, pair_logits
from ensemble.rankers.pairrm.scoring import full_matrices, scores_from_matrix
from ensemble.rankers.ranks import ranks_from_scores
from tests.pairrm.test_http import _client


@contextmanager
def position_noise(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Add 1e-6 x (row index in the batch) to every logit the model returns."""
    if not enabled:
        yield
        return

    def hook(_module: torch.nn.Module, _args: object, output: Any) -> Any:
        logits = output if isinstance(output, torch.Tensor) else output.logits  # [b] or [b, 1]
        noisy = logits + 1e-6 * torch.arange(logits.shape[0], dtype=logits.dtype).reshape(
            -1, *([1] * (logits.dim() - 1)))
        if isinstance(output, torch.Tensor):
            return noisy
        output.logits = noisy
        return output

    handle = model.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


noise = pytest.mark.parametrize("noisy", [False, True], ids=["plain", "position-noise"])


@noise
def test_duplicate_candidates_tie_exactly(tiny_pairrm: PairRM, noisy: bool):
    cands = ["a", "a much longer answer", "a"]
    with position_noise(tiny_pairrm.model, noisy):
        (matrix,) = full_matrices(tiny_pairrm, ["q"], [cands], max_batch_pairs=8)
    scores = scores_from_matrix(matrix)
    assert scores[0] == scores[2]
    assert matrix[0, 2] == matrix[2, 0]
    ranks = ranks_from_scores(scores)
    assert ranks[0] == ranks[2] and sorted(ranks.tolist()) in ([1, 1, 3], [1, 2, 2])


@noise
def test_pair_logits_do_not_depend_on_the_order_of_the_pairs(tiny_pairrm: PairRM, noisy: bool):
    texts = ["one", "two words", "three little words", "four"]
    triples = [("q", a, b) for a in texts for b in texts if a != b]
    with position_noise(tiny_pairrm.model, noisy):
        forward = pair_logits(tiny_pairrm, triples, max_batch_pairs=5)
        backward = pair_logits(tiny_pairrm, triples[::-1], max_batch_pairs=5)[::-1]
    np.testing.assert_array_equal(forward, backward)


@noise
def test_identical_rows_run_once(tiny_pairrm: PairRM, noisy: bool):
    rows: list[int] = []
    hook = tiny_pairrm.model.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[0]))
    try:
        with position_noise(tiny_pairrm.model, noisy):
            logits = pair_logits(tiny_pairrm, [("q", "x", "y")] * 3 + [("q", "y", "x")])
    finally:
        hook.remove()
    assert sum(rows) == 2
    assert logits[0] == logits[1] == logits[2]


@noise
def test_bubble_tie_of_texts_the_model_reads_the_same(tiny_pairrm: PairRM, noisy: bool):
    tied = ["hello world", "hello[SEP]world"]  # neutralised to the same tokens: d == 0 exactly
    for seed in range(4):
        perm = torch.randperm(2, generator=torch.Generator().manual_seed(seed)).tolist()
        with position_noise(tiny_pairrm.model, noisy):
            for worst in (False, True):
                result = bubble_select(tiny_pairrm, ["q"], [tied], worst=worst,
                                       generator=torch.Generator().manual_seed(seed))
                assert result.selected[0] == perm[1]  # ties go to the later candidate


@noise
def test_blender_compare_is_exactly_antisymmetric(tiny_pairrm_hf_dir: Path, noisy: bool):
    blender = Blender()
    blender.loadranker(str(tiny_pairrm_hf_dir), device="cpu")
    inputs = ["hello!", "what is 2+2?", "hi"]
    a = ["hi there", "4", "same"]
    b = ["go away", "five, I think", "same"]
    with position_noise(blender.ranker.model, noisy):
        ab = blender.compare(inputs, a, b, return_logits=True, batch_size=2)
        ba = blender.compare(inputs, b, a, return_logits=True, batch_size=2)
        ranks = blender.rank(["q"], [["a", "b", "a"]], batch_size=3)
    np.testing.assert_array_equal(ab, -ba)
    assert ab[2] == 0.0
    assert ranks[0][0] == ranks[0][2]


@noise
async def test_http_rank_and_compare_of_duplicates(tiny_pairrm_hf_dir: Path, noisy: bool):
    ranker = await PairRMRanker.load(PairRMRankerConfig(checkpoint=str(tiny_pairrm_hf_dir),
                                                        device="cpu", batch_wait_ms=1))
    try:
        async for client in _client(ranker):
            with position_noise(ranker.pairrm.model, noisy):
                rank = await client.post("/v1/rank", json={"prompt": "q", "candidates": ["a", "b", "a"]})
                ab = await client.post("/v1/compare", json={"prompt": "q", "a": "hi", "b": "bye"})
                ba = await client.post("/v1/compare", json={"prompt": "q", "a": "bye", "b": "hi"})
                same = await client.post("/v1/compare", json={"prompt": "q", "a": "x", "b": "x"})
    finally:
        await ranker.aclose()
    ranks = rank.json()["ranks"]
    assert ranks[0] == ranks[2], ranks
    assert ab.json()["logit"] == -ba.json()["logit"]
    assert ab.json()["logit_ab"] == ba.json()["logit_ba"]
    assert same.json()["logit"] == 0.0 and same.json()["probability"] == 0.5


@noise
async def test_reward_model_duplicates_tie_exactly(tiny_deberta_rm_dir: Path, noisy: bool):
    from ensemble.config import RewardModelRankerConfig
    from ensemble.rankers.reward_model import RewardModelRanker
    from ensemble.types import ChatMessage

    ranker = await RewardModelRanker.load(RewardModelRankerConfig(
        checkpoint=str(tiny_deberta_rm_dir), device="cpu", batch_wait_ms=1, max_batch_size=16))
    try:
        with position_noise(ranker.rm.model, noisy):
            ranking = await ranker.rank([ChatMessage("user", "q")], ["same", "other text", "same"])
    finally:
        await ranker.aclose()
    assert ranking.scores[0] == ranking.scores[2]
    assert ranking.ranks[0] == ranking.ranks[2]
