"""PairRM scoring: pairwise logits, the full comparison matrix, scores, ranks and bubble selection.

Spec: ``shared/reference/llm-blender-spec.md`` sections 1.6-1.8 and 8.

The original runs one forward pass per ordered pair (i, j), batched across prompts only. Here
every ordered pair of every item in a call is one row of one pool; rows are sorted by length and
cut into batches of ``max_batch_pairs``. Each row is still the full three-segment sequence, so
the math is the original's (only floating-point summation order may differ across batch shapes).
All functions run synchronously on the caller's thread under ``torch.inference_mode``; the
gateway calls them from its device thread (``ensemble.compute.BatchWorker``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ensemble.rankers.pairrm.inputs import (
    CANDIDATE_TOKEN,
    SOURCE_TOKEN,
    distinct_rows,
    encode_segments,
    length_sorted_batches,
    neutralise,
    pad_rows,
    pair_row,
    reserved_strings,
)
from ensemble.rankers.pairrm.model import PairRMModel, PrefixIds

Triple = tuple[str, str, str]  # (source, left candidate, right candidate)
# Padded tokens per forward pass: bounds the [rows, heads, width, width] attention tensors.
DEFAULT_MAX_BATCH_TOKENS = 16384


@dataclass
class PairRM:
    """A loaded PairRM: the network, its tokenizer and the truncation limits it was trained with."""

    model: PairRMModel
    tokenizer: PreTrainedTokenizerBase
    source_max_length: int = 1224
    candidate_max_length: int = 412
    max_batch_pairs: int = 32
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS
    reserved: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.reserved = reserved_strings(self.tokenizer)

    @property
    def prefix_ids(self) -> PrefixIds:
        return self.model.prefix_ids

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


# ----------------------------------------------------------------------------- forward passes


def pair_logits(
    pairrm: PairRM,
    triples: Sequence[Triple],
    *,
    source_max_length: int | None = None,
    candidate_max_length: int | None = None,
    max_batch_pairs: int | None = None,
) -> np.ndarray:
    """logit(left, right | source) per triple, float32 [P]; > 0 means LEFT is better.

    Each distinct text is tokenized once and each distinct token row runs once, in a canonical
    order (:func:`distinct_rows`): identical rows get bit-identical logits, and the result does
    not depend on the order of ``triples``. Rows are length-sorted and run ``max_batch_pairs`` at
    a time, and at most ``pairrm.max_batch_tokens`` padded tokens. Limits default to the
    checkpoint's (1224 / 412 for PairRM).
    """
    if not triples:
        return np.zeros((0,), dtype=np.float32)
    src_max = source_max_length or pairrm.source_max_length
    cand_max = candidate_max_length or pairrm.candidate_max_length
    rows, index = distinct_rows(encode_pair_rows(pairrm, triples, src_max, cand_max))
    out = np.zeros((len(rows),), dtype=np.float32)
    pad_id = pairrm.tokenizer.pad_token_id
    with torch.inference_mode():
        batches = length_sorted_batches([len(r) for r in rows],
                                        max_batch_pairs or pairrm.max_batch_pairs,
                                        pairrm.max_batch_tokens)
        for chunk in batches:
            ids, mask = pad_rows([rows[i] for i in chunk], pad_id)  # [b, L]
            logits = pairrm.model(ids.to(pairrm.device), mask.to(pairrm.device))  # [b]
            out[chunk] = logits.float().cpu().numpy()
    return out[index]


def encode_pair_rows(
    pairrm: PairRM, triples: Sequence[Triple], source_max_length: int, candidate_max_length: int
) -> list[list[int]]:
    """Token-id rows for ``triples`` (no padding); every distinct text is encoded once."""
    sources = sorted({s for s, _, _ in triples})
    candidates = sorted({c for _, a, b in triples for c in (a, b)})
    clean = [neutralise(t, pairrm.reserved) for t in sources]
    source_ids = dict(zip(sources, encode_segments(pairrm.tokenizer, clean, SOURCE_TOKEN), strict=False))
    clean = [neutralise(t, pairrm.reserved) for t in candidates]
    cand_ids = dict(zip(candidates, encode_segments(pairrm.tokenizer, clean, CANDIDATE_TOKEN), strict=False))
    return [
        pair_row(
            source_ids[s], cand_ids[a], cand_ids[b], pairrm.prefix_ids,
            source_max_length=source_max_length, candidate_max_length=candidate_max_length,
        )
        for s, a, b in triples
    ]


def full_matrices(
    pairrm: PairRM,
    sources: Sequence[str],
    candidates: Sequence[Sequence[str]],
    **limits: int | None,
) -> list[np.ndarray]:
    """M[i, j] = logit(candidate i left, j right) per item, float32 [n, n], diagonal 0.

    Items may have different n. All n(n-1) ordered pairs of all items run in one length-sorted
    pool (spec 1.6 ran one pass per ordered pair). ``limits``: see :func:`pair_logits`.
    """
    triples: list[Triple] = []
    for source, cands in zip(sources, candidates, strict=True):
        n = len(cands)
        triples += [(source, cands[i], cands[j]) for i in range(n) for j in range(n) if i != j]
    flat = pair_logits(pairrm, triples, **limits)
    matrices, start = [], 0
    for cands in candidates:
        n = len(cands)
        m = np.zeros((n, n), dtype=np.float32)
        off_diagonal = ~np.eye(n, dtype=bool)
        m[off_diagonal] = flat[start : start + n * (n - 1)]  # row-major, same order as built
        matrices.append(m)
        start += n * (n - 1)
    return matrices


def full_matrix(
    pairrm: PairRM, sources: Sequence[str], candidates: Sequence[Sequence[str]], **limits: int | None
) -> np.ndarray:
    """Rectangular form of :func:`full_matrices`: float32 [B, n, n]."""
    if len({len(c) for c in candidates}) > 1:
        raise ValueError("full_matrix needs the same number of candidates for every item")
    n = len(candidates[0]) if candidates else 0
    matrices = full_matrices(pairrm, sources, candidates, **limits)
    return np.stack(matrices) if matrices else np.zeros((0, n, n), dtype=np.float32)


# ----------------------------------------------------------------------------- scores and ranks


def scores_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """s_i = (1/n) * sum_j (M[i, j] - M[j, i]), float32 [..., n] ("max_logits", spec 1.7)."""
    m = np.asarray(matrix, dtype=np.float32)
    n = m.shape[-1]
    return ((m - np.swapaxes(m, -1, -2)).sum(axis=-1, dtype=np.float32) / np.float32(n)).astype(
        np.float32
    )


def wins_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """wins_i = #{j: M[i, j] > 0} + #{k: M[k, i] < 0}, int32 [..., n] ("max_wins", spec 1.7).

    Each ordered pair votes once: candidate i wins it with i on the left when its logit is
    positive, and with i on the right when the logit is negative (at most 2(n-1) wins). These
    are LLM-Blender's rank-helper counts; its score helper's mean for the second term is a bug
    (spec 1.7) and is not copied. Ranks: :func:`~ensemble.rankers.ranks.ranks_from_scores` of
    the wins.

    >>> wins_from_matrix(np.array([[0, 1.0, 2.0], [-1.0, 0, 0.5], [-3.0, -0.5, 0]])).tolist()
    [4, 2, 0]
    """
    m = np.asarray(matrix)
    return ((m > 0).sum(axis=-1) + (m < 0).sum(axis=-2)).astype(np.int32)


# ----------------------------------------------------------------------------- bubble selection


@dataclass(frozen=True)
class BubbleResult:
    """One bubble pass per item (spec 1.8).

    ``select_process[b]`` rows are (current, next, carried) per step, int64 [B, 3, n-1];
    ``order[b]`` is [winner, losers in elimination order] (only the first is meaningful).
    """

    selected: np.ndarray  # [B] index of the best (or worst) candidate
    select_process: np.ndarray  # [B, 3, n-1]
    order: np.ndarray  # [B, n]


def bubble_select(
    pairrm: PairRM,
    sources: Sequence[str],
    candidates: Sequence[Sequence[str]],
    *,
    worst: bool = False,
    generator: torch.Generator | None = None,
    **limits: int | None,
) -> BubbleResult:
    """Single random pass with 2(n-1) comparisons per item; ties go to the later candidate.

    One permutation (``torch.randperm`` with ``generator``, the global RNG when None, as the
    original) is shared by every item of the call. d = logit(cur, next) - logit(next, cur); for
    "best" next is carried when d <= 0, for "worst" next is carried when d >= 0.
    """
    n_set = {len(c) for c in candidates}
    if len(n_set) != 1 or min(n_set) < 2:
        raise ValueError("bubble_select needs the same number (>= 2) of candidates for every item")
    batch, n = len(candidates), n_set.pop()
    perm = torch.randperm(n, generator=generator).numpy()
    carried = np.full((batch,), perm[0], dtype=np.int64)  # [B]
    process = np.zeros((batch, 3, n - 1), dtype=np.int64)  # [B, 3, n-1]
    for j in range(n - 1):
        nxt = int(perm[j + 1])
        triples = [(src, cands[int(c)], cands[nxt]) for src, cands, c in zip(sources, candidates, carried, strict=False)]
        triples += [(src, cands[nxt], cands[int(c)]) for src, cands, c in zip(sources, candidates, carried, strict=False)]
        logits = pair_logits(pairrm, triples, **limits)
        d = logits[:batch] - logits[batch:]  # [B]
        keep_next = d >= 0 if worst else d <= 0
        new = np.where(keep_next, nxt, carried)
        process[:, 0, j], process[:, 1, j], process[:, 2, j] = carried, nxt, new
        carried = new
    losers = np.where(process[:, 0, :] == process[:, 2, :], process[:, 1, :], process[:, 0, :])
    order = np.concatenate([carried[:, None], losers], axis=1)  # [B, n]
    return BubbleResult(selected=carried, select_process=process, order=order)
