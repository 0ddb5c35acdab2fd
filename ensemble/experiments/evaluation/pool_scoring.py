"""Scores over the candidate pool, each computed once and kept in the store (``EvalScores``):
every configured ranker's ranking of each prompt's pool, with how long it took, and the judge's
verdicts on the pool and on the fused answers.

The judge scores the pool **once**, in one of two ways:

* **pointwise** (``reward_model``, ``llm_judge`` in pointwise mode): one score per distinct
  answer text, independent of the other answers; cached per (judge, prompt, text), so a fused
  answer added later costs one more score and nothing else is judged again.
* **pairwise** (any other ranker: PairRM, the pairwise LLM judge...): a matrix over the
  distinct texts, every pair judged by :class:`~ensemble.experiments.judge.PairwiseJudge`
  (both orders unless the ranker already judges both itself); cached per (judge, prompt, pair).
  A text's judge score is its mean score difference against the pool's other texts.

Verdicts are decided by ``judge.decide`` (rounded, with the tie margin): float noise never
decides one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ensemble.config import RankerConfig
from ensemble.experiments.evaluation.datasets import Prompt
from ensemble.experiments.evaluation.offline import content_key
from ensemble.experiments.events import EvalScores, Outcome
from ensemble.experiments.judge import PairwiseJudge, decide
from ensemble.experiments.store import ExperimentStore
from ensemble.rankers.base import Ranker

logger = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class PoolRanking:
    scores: tuple[float, ...]  # one per pool candidate, pool order
    elapsed_s: float  # ranking time, part of a ranked policy's latency


@dataclass(frozen=True)
class Judged:
    """The judge's view of one prompt's answers: pool texts, then fused ones."""

    scores: dict[str, float]  # text -> judge score
    differences: dict[tuple[str, str], float] = field(default_factory=dict)  # pairwise only

    def outcome(self, baseline: str, answer: str, tie_margin: float) -> Outcome:
        """``answer`` against ``baseline`` (from ``answer``'s side)."""
        if answer == baseline:
            return "tie"
        if self.differences:
            return decide(0.0, self.differences[(baseline, answer)], tie_margin)
        return decide(self.scores[baseline], self.scores[answer], tie_margin)


async def rank_pools(ranker: Ranker, fingerprint: str, store: ExperimentStore, run: str,
                     pools: dict[str, tuple[Prompt, list[str]]],
                     progress: Progress) -> dict[str, PoolRanking]:
    """``ranker``'s ranking of every prompt's pool (prompt id -> ranking), one prompt at a time
    so each ranking time is the ranker's alone. A prompt it fails on is left out (counted by
    the caller as a policy without an answer)."""
    keys = {pid: content_key(fingerprint, prompt.text, texts)
            for pid, (prompt, texts) in pools.items()}
    cached = await store.eval_scores(keys.values())
    rankings = {pid: PoolRanking(tuple(hit.scores), hit.elapsed_s)
                for pid, key in keys.items() if (hit := cached.get(key)) is not None}
    progress(len(rankings))
    for pid, (prompt, texts) in pools.items():
        if pid in rankings:
            continue
        started = time.perf_counter()
        try:
            ranking = await ranker.rank(prompt.messages(), texts) if len(texts) > 1 else None
        except Exception as exc:  # noqa: BLE001 - this prompt goes unranked; the run goes on
            logger.warning("ranker %s failed on prompt %s (that policy has no answer there): "
                           "%s: %s", ranker.name, pid, type(exc).__name__, exc)
            progress(1)
            continue
        scores = ranking.scores if ranking is not None else (0.0,) * len(texts)
        elapsed = time.perf_counter() - started
        rankings[pid] = PoolRanking(tuple(scores), elapsed)
        store.submit(EvalScores(keys[pid], run, ranker.name, pid, list(scores), elapsed))
        progress(1)
    await store.flush()
    return rankings


def is_pointwise(cfg: RankerConfig) -> bool:
    """Judges whose score of an answer does not depend on the other answers."""
    return cfg.type == "reward_model" or getattr(cfg, "mode", None) == "pointwise"


class PoolJudge:
    """The judge of a pool run, its verdicts cached in the store."""

    def __init__(self, judge: PairwiseJudge, *, pointwise: bool, fingerprint: str,
                 store: ExperimentStore, run: str, concurrency: int = 1) -> None:
        self.judge = judge
        # Pairs in flight at once. A ranker's timeout_s runs from the call on, queueing
        # included: all pairs of a prompt at once made the last ones time out while queued.
        self._slots = asyncio.Semaphore(concurrency)
        self.pointwise = pointwise
        self._fingerprint = fingerprint
        self._store = store
        self._run = run
        self.judged = 0  # verdicts asked of the judge (not from the store)

    async def judge_prompt(self, prompt: Prompt, pool: Sequence[str],
                           fused: Sequence[str]) -> Judged:
        """Scores of the distinct ``pool`` texts and of the ``fused`` answers."""
        texts = list(dict.fromkeys(pool))
        extra = [t for t in dict.fromkeys(fused) if t not in texts]
        if self.pointwise:
            return Judged(await self._points(prompt, [*texts, *extra]))
        pairs = [*itertools.combinations(texts, 2), *((t, f) for f in extra for t in texts)]
        differences = await self._pairs(prompt, pairs)
        scores = {t: _mean([differences[(u, t)] for u in texts if u != t]) for t in texts}
        scores.update({f: _mean([differences[(u, f)] for u in texts]) for f in extra})
        return Judged(scores, differences)

    async def difference(self, prompt: Prompt, a: str, b: str) -> float:
        """score(b) - score(a), cached like every verdict (the agreement mode's one question)."""
        if a == b:
            return 0.0
        if self.pointwise:
            scores = await self._points(prompt, [a, b])
            return scores[b] - scores[a]
        return (await self._pairs(prompt, [(a, b)]))[(a, b)]

    async def _points(self, prompt: Prompt, texts: list[str]) -> dict[str, float]:
        keys = {t: content_key(self._fingerprint, prompt.text, "point", t) for t in texts}
        cached = await self._store.eval_scores(keys.values())
        scores = {t: cached[k].scores[0] for t, k in keys.items() if k in cached}
        missing = [t for t in texts if t not in scores]
        if missing:
            started = time.perf_counter()
            # a ranker scores two or more; one text is judged next to itself
            asked = missing if len(missing) > 1 else missing * 2
            ranking = await self.judge.ranker.rank(prompt.messages(), asked)
            elapsed = (time.perf_counter() - started) / len(asked)
            self.judged += len(missing)
            for text, score in zip(missing, ranking.scores, strict=False):
                scores[text] = score
                self._keep(keys[text], prompt, [score], elapsed)
        return scores

    async def _pairs(self, prompt: Prompt,
                     pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """(a, b) -> score(b) - score(a), both ways round, for every pair."""
        ordered = [tuple(sorted(pair)) for pair in pairs]  # one cache entry per unordered pair
        keys = {pair: content_key(self._fingerprint, prompt.text, "pair", *pair)
                for pair in ordered}
        cached = await self._store.eval_scores(keys.values())

        async def verdict(pair: tuple[str, ...]) -> tuple[float, float]:
            hit = cached.get(keys[pair])
            if hit is not None:
                return hit.scores[0], hit.scores[1]
            async with self._slots:
                started = time.perf_counter()
                judged = await self.judge.judge(prompt.messages(), pair[0], pair[1])
            self.judged += 1
            scores = [judged.score_a, judged.score_b]
            self._keep(keys[pair], prompt, scores, time.perf_counter() - started)
            return judged.score_a, judged.score_b

        differences: dict[tuple[str, str], float] = {}
        for pair, (score_a, score_b) in zip(ordered, await asyncio.gather(
                *(verdict(pair) for pair in ordered)), strict=True):
            a, b = pair
            differences[(a, b)] = score_b - score_a
            differences[(b, a)] = score_a - score_b
        return differences

    async def flush(self) -> None:
        await self._store.flush()

    def _keep(self, key: str, prompt: Prompt, scores: list[float], elapsed_s: float) -> None:
        self._store.submit(EvalScores(key, self._run, self.judge.name, prompt.id, scores,
                                      elapsed_s))


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0
