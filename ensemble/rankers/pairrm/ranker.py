"""``PairRMRanker``: the gateway's PairRM, batching the pairs of concurrent requests.

One instance per process (the engine's ranker cache shares it). Every request becomes a job of
ordered (source, left, right) triples; a :class:`~ensemble.compute.BatchWorker` gathers jobs
for ``batch_wait_ms`` or until ``max_batch_pairs`` pairs, and runs them as one length-sorted pool
on its device thread (job weight = number of pairs, so an n=8 request counts 56 rows).

Chat messages -> source: see :func:`ensemble.rankers.pairrm.inputs.chat_prompt` (single turn:
system text + user text, no separator; multi-turn: the ``compare_conversations`` template).

``comparison``:

- ``full`` (default, exact, deterministic): all n(n-1) ordered pairs; scores are the spec 1.7
  means of M[i, j] - M[j, i], ranks competition ranks.
- ``max_wins``: the same n(n-1) pairs, aggregated by LLM-Blender's "max_wins" policy: a
  candidate's score is the number of ordered pairs it wins (``wins_from_matrix``, 0 to
  2(n-1)); ranks are competition ranks of those counts, so ties are common.
- ``bubble``: one random pass of 2(n-1) comparisons (spec 1.8), run step by step (each step is
  one job, so steps of concurrent requests share batches). It only names a winner; the ranking
  returned is ordinal: the winner ranks 1, then the losers, the last eliminated first, and
  ``score = n - rank`` (not logits).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ensemble.checkpoints import public_name
from ensemble.compute import BatchWorker, request_torch_threads
from ensemble.config import PairRMRankerConfig
from ensemble.errors import RankerError
from ensemble.rankers.base import Comparison
from ensemble.rankers.pairrm.checkpoint import load_pairrm
from ensemble.rankers.pairrm.inputs import chat_prompt
from ensemble.rankers.pairrm.scoring import (
    PairRM,
    Triple,
    pair_logits,
    scores_from_matrix,
    wins_from_matrix,
)
from ensemble.rankers.ranks import ranks_from_scores
from ensemble.types import ChatMessage, Ranking

logger = logging.getLogger(__name__)


class PairRMRanker:
    """Batched PairRM behind the ``Ranker`` protocol, plus :meth:`compare` and :meth:`rank_source`."""

    order_invariant = True  # every ordered pair (i, j), i != j, is compared

    def __init__(
        self, cfg: PairRMRankerConfig, pairrm: PairRM,
        worker: BatchWorker[tuple[Triple, ...], np.ndarray],
    ) -> None:
        self.name = f"pairrm:{public_name(cfg.checkpoint)}"
        self.cfg = cfg
        self.pairrm = pairrm
        self._worker = worker
        self._rng = np.random.default_rng()

    @classmethod
    async def load(cls, cfg: PairRMRankerConfig) -> PairRMRanker:
        """Load the checkpoint on the worker's device thread, warm it up, return the ranker."""
        holder: list[PairRM] = []

        def process(jobs: Sequence[tuple[Triple, ...]]) -> list[np.ndarray]:
            return _run_jobs(holder[0], cfg, jobs)

        worker: BatchWorker[tuple[Triple, ...], np.ndarray] = BatchWorker(
            process, name="pairrm", max_batch_size=cfg.max_batch_pairs,
            max_wait_ms=cfg.batch_wait_ms, weight=len,
            # one request's pairs go in chunks of at most max_batch_pairs, round-robin with
            # the other requests' (fairness: ensemble/compute.py)
            split=lambda job, rows: [job[i : i + rows] for i in range(0, len(job), rows)],
            join=np.concatenate,
        )

        def build() -> PairRM:
            request_torch_threads(cfg.threads, "pairrm ranker")
            pairrm = load_pairrm(cfg.checkpoint, device=cfg.device, dtype=cfg.dtype,
                                 cache_dir=cfg.cache_dir, max_batch_pairs=cfg.max_batch_pairs,
                                 max_batch_tokens=cfg.max_batch_tokens,
                                 attention=cfg.attention, compile=cfg.compile)
            pair_logits(pairrm, [("warm-up", "a", "b")])
            return pairrm

        holder.append(await worker.load(build))
        return cls(cfg, holder[0], worker)

    @property
    def batches_run(self) -> int:
        """Pooled model calls so far (pairs of concurrent requests share one)."""
        return self._worker.batches_run

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        prompt = chat_prompt(messages)
        return await self.rank_source(prompt.source, [prompt.candidate(c) for c in candidates])

    async def rank_source(self, source: str, candidates: Sequence[str]) -> Ranking:
        """Rank raw candidate texts for a raw source string (``Blender.rank`` semantics)."""
        n = len(candidates)
        if n <= 1:
            return Ranking(scores=(0.0,) * n, ranks=(1,) * n)
        if self.cfg.comparison == "bubble":
            return await self._bubble(source, candidates)
        triples = tuple((source, candidates[i], candidates[j])
                        for i in range(n) for j in range(n) if i != j)
        logits = await self._worker.submit(triples)
        matrix = np.zeros((n, n), dtype=np.float32)
        matrix[~np.eye(n, dtype=bool)] = logits  # row-major, the order built above
        scores = wins_from_matrix(matrix) if self.cfg.comparison == "max_wins" else (
            scores_from_matrix(matrix))
        return Ranking(scores=tuple(float(s) for s in scores),
                       ranks=tuple(int(r) for r in ranks_from_scores(scores)))

    async def compare(self, messages: Sequence[ChatMessage], a: str, b: str) -> Comparison:
        """Both orders of replies (a, b) to ``messages``, batched with concurrent requests.

        A single user message gives ``Blender.compare``'s raw source/candidates.
        """
        prompt = chat_prompt(messages)
        source, a_text, b_text = prompt.source, prompt.candidate(a), prompt.candidate(b)
        logits = await self._worker.submit(((source, a_text, b_text), (source, b_text, a_text)))
        return Comparison(logit_ab=float(logits[0]), logit_ba=float(logits[1]))

    async def _bubble(self, source: str, candidates: Sequence[str]) -> Ranking:
        n = len(candidates)
        perm = self._rng.permutation(n)
        carried, losers = int(perm[0]), []
        for nxt in (int(x) for x in perm[1:]):
            cur_text, next_text = candidates[carried], candidates[nxt]
            logits = await self._worker.submit(
                ((source, cur_text, next_text), (source, next_text, cur_text)))
            keep_next = float(logits[0] - logits[1]) <= 0  # ties go to the later candidate
            losers.append(carried if keep_next else nxt)
            carried = nxt if keep_next else carried
        order = [carried, *reversed(losers)]
        ranks = [0] * n
        for position, index in enumerate(order, start=1):
            ranks[index] = position
        return Ranking(scores=tuple(float(n - r) for r in ranks), ranks=tuple(ranks))

    async def aclose(self) -> None:
        await self._worker.aclose()


def _run_jobs(
    pairrm: PairRM, cfg: PairRMRankerConfig, jobs: Sequence[tuple[Triple, ...]]
) -> list[np.ndarray]:
    """All jobs' triples as one pool; one float32 array of logits per job."""
    flat = [t for job in jobs for t in job]
    try:
        logits = pair_logits(pairrm, flat, source_max_length=cfg.source_max_length,
                             candidate_max_length=cfg.candidate_max_length,
                             max_batch_pairs=cfg.max_batch_pairs)
    except Exception as exc:
        logger.exception("PairRM forward failed")
        raise RankerError(f"PairRM failed: {type(exc).__name__}: {exc}") from exc
    out, start = [], 0
    for job in jobs:
        out.append(logits[start : start + len(job)])
        start += len(job)
    return out
