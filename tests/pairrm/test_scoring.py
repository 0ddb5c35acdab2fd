"""Spec 1.6-1.8 / section 8: full matrix, scores, competition ranks, bubble selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ensemble.rankers.pairrm import (
    PairRM,
    bubble_select,
    full_matrices,
    full_matrix,
    pair_logits,
    ranks_from_scores,
    scores_from_matrix,
)

SOURCES = ["How do I sort a list in Python?", "Name a prime number."]
CANDS = [
    ["Use sorted(xs) or xs.sort().", "You cannot.", "Call list.sort() in place; sorted() copies."],
    ["7", "Nine is prime.", "2, the only even prime."],
]


def test_full_matrix_is_all_ordered_pair_logits(tiny_pairrm: PairRM):
    m = full_matrix(tiny_pairrm, SOURCES, CANDS)
    assert m.shape == (2, 3, 3) and m.dtype == np.float32
    assert (np.diagonal(m, axis1=1, axis2=2) == 0).all()
    for b, (src, cands) in enumerate(zip(SOURCES, CANDS, strict=False)):
        for i in range(3):
            for j in range(3):
                if i != j:
                    single = pair_logits(tiny_pairrm, [(src, cands[i], cands[j])], max_batch_pairs=1)
                    assert m[b, i, j] == pytest.approx(single[0], abs=1e-5)
    assert not np.allclose(m, -np.swapaxes(m, 1, 2))  # the model is not antisymmetric


def test_ragged_items_share_one_pool(tiny_pairrm: PairRM):
    ragged = full_matrices(tiny_pairrm, SOURCES, [CANDS[0], CANDS[1][:2]])
    assert [m.shape for m in ragged] == [(3, 3), (2, 2)]
    np.testing.assert_allclose(ragged[1], full_matrix(tiny_pairrm, SOURCES[1:], [CANDS[1][:2]])[0], atol=1e-5)


def test_scores_mean_with_divisor_n_and_sum_to_zero():
    m = np.array([[0.0, 1.0, -2.0], [0.5, 0.0, 3.0], [4.0, -1.0, 0.0]], dtype=np.float32)
    s = scores_from_matrix(m)
    expected = [((1.0 - 0.5) + (-2.0 - 4.0)) / 3, ((0.5 - 1.0) + (3.0 + 1.0)) / 3, ((4.0 + 2.0) + (-1.0 - 3.0)) / 3]
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    assert s.dtype == np.float32 and abs(float(s.sum())) < 1e-6
    bias = m + 7.5 * (1 - np.eye(3, dtype=np.float32))  # constant off-diagonal bias cancels
    np.testing.assert_allclose(scores_from_matrix(bias), s, atol=1e-6)
    x, y = 1.25, -0.5
    np.testing.assert_allclose(scores_from_matrix(np.array([[0, x], [y, 0]], np.float32)),
                               [(x - y) / 2, (y - x) / 2])


def test_competition_ranks():
    assert ranks_from_scores(np.array([1.0, 2.0, 2.0, 0.0])).tolist() == [3, 1, 1, 4]
    two_d = ranks_from_scores(np.array([[0.1, 0.3, 0.2], [5.0, 5.0, 5.0]], dtype=np.float32))
    assert two_d.tolist() == [[3, 1, 2], [1, 1, 1]] and two_d.dtype == np.int32
    assert ranks_from_scores(scores_from_matrix(np.zeros((1, 1, 1), np.float32))).tolist() == [[1]]


def test_model_scores_sum_to_zero_and_rank(tiny_pairrm: PairRM):
    s = scores_from_matrix(full_matrix(tiny_pairrm, SOURCES, CANDS))
    np.testing.assert_allclose(s.sum(axis=1), 0.0, atol=1e-5)
    ranks = ranks_from_scores(s)
    assert sorted(ranks[0].tolist()) == [1, 2, 3] or len(set(s[0].tolist())) < 3


def _fake_matrix_bubble(m: np.ndarray, perm: np.ndarray, worst: bool) -> tuple[int, list[int]]:
    carried, losers = int(perm[0]), []
    for nxt in perm[1:]:
        d = m[carried, nxt] - m[nxt, carried]
        keep_next = d >= 0 if worst else d <= 0
        losers.append(carried if keep_next else int(nxt))
        carried = int(nxt) if keep_next else carried
    return carried, losers


@pytest.mark.parametrize("worst", [False, True])
def test_bubble_matches_a_hand_walk_over_the_matrix(tiny_pairrm: PairRM, worst: bool):
    m = full_matrix(tiny_pairrm, SOURCES, CANDS)
    result = bubble_select(tiny_pairrm, SOURCES, CANDS, worst=worst,
                           generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(3, generator=torch.Generator().manual_seed(3)).numpy()
    assert result.select_process.shape == (2, 3, 2)
    for b in range(2):
        winner, losers = _fake_matrix_bubble(m[b], perm, worst)
        assert result.selected[b] == winner
        assert result.order[b].tolist() == [winner, *losers]
        assert result.select_process[b, 0, 0] == perm[0] and result.select_process[b, 1].tolist() == perm[1:].tolist()


def test_bubble_ties_go_to_the_later_candidate(tiny_pairrm: PairRM):
    same = ["identical answer"] * 4
    result = bubble_select(tiny_pairrm, ["q"], [same], generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(0)).tolist()
    assert result.selected[0] == perm[-1]
    assert result.select_process[0, 2].tolist() == perm[1:]
