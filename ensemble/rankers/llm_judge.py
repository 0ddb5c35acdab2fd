"""The ``llm_judge`` ranker: an LLM, behind any configured backend, judges the candidates.

The judge is asked for a one-token verdict (``max_tokens: 1``, ``temperature: 0``,
``logprobs`` with ``top_logprobs``), and the score is read from the log-probabilities of the
verdict tokens, not from the sampled token. So one call gives a graded score, and a judge
that would answer "No" to everything still orders the candidates by how close each came.

* **pointwise**: one call per candidate, with ``POINTWISE_TEMPLATE``.
  score = log P(yes) - log P(no).
* **pairwise**: for every pair {i, j}, two calls: i shown as A and j as B, then the
  reverse. ``logit_ab`` = log P(A) - log P(B) with i first; ``logit_ba`` the same with j
  first. A judge that prefers whichever reply comes first adds the same amount to both, so
  ``combined = logit_ab - logit_ba`` cancels it (the :class:`Comparison` PairRM returns too).
  A candidate's score is the mean of its combined logits against every other candidate.
  It costs n(n-1) calls; :meth:`PairwiseJudge.compare` (``/v1/compare``) costs 2.

Verdict tokens are matched after stripping spaces and ignoring case (" Yes", "yes" and
"YES" all count), and their probabilities are summed. A verdict token missing from the top
``top_logprobs`` is given the smallest probability listed, an upper bound of its own. When
both are missing the score is 0: the judge said something else.

The calls run concurrently, at most ``max_concurrency`` at once. Any failure, or the whole
ranking taking longer than ``timeout_s``, hands the ranking to ``fallback`` (another ranker
from the same factory, e.g. ``{type: consensus}``) and logs why. Without a fallback it is a
``RankerError``. Scores are rounded to ``_DIGITS`` decimals. Equal scores share a rank, and
``Ranking.order`` then keeps the candidates' own order: ties never depend on float noise.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from ensemble.backends.base import Backend
from ensemble.config import LLMJudgeRankerConfig
from ensemble.errors import BlendError, OverloadedError, RankerError
from ensemble.rankers.base import Comparison, Ranker, scores_both_orders
from ensemble.rankers.ranks import ranks_from_scores
from ensemble.types import ChatMessage, Completion, Ranking, SamplingParams

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_SYSTEM = "You are an impartial and strict judge of replies written by AI assistants."

POINTWISE_TEMPLATE = """\
Read the conversation, then a candidate reply to its last user message.

<conversation>
{conversation}
</conversation>

<reply>
{candidate}
</reply>

Is this reply correct, helpful and on topic for the last user message? \
Answer with a single word: Yes or No."""

PAIRWISE_TEMPLATE = """\
Read the conversation, then two candidate replies to its last user message.

<conversation>
{conversation}
</conversation>

<reply A>
{a}
</reply A>

<reply B>
{b}
</reply B>

Which reply is more correct, helpful and on topic for the last user message? \
Answer with a single letter: A or B."""

_DIGITS = 4  # score rounding: equal judgements must tie exactly on every CPU


class _Judge:
    """What both modes share: prompts, one verdict call, concurrency, the fallback."""

    def __init__(self, cfg: LLMJudgeRankerConfig, backend: Backend, fallback: Ranker | None,
                 template: str, verdicts: tuple[str, str]) -> None:
        self.name = f"llm_judge:{backend.name}:{cfg.mode}"
        self._cfg = cfg
        self._backend = backend
        self._fallback = fallback
        # pointwise: one answer per prompt; pairwise: both orders of every pair. A fallback
        # that is not (``none`` ranks by position) makes the ranker order-dependent.
        self.order_invariant = fallback is None or scores_both_orders(fallback)
        self._template = cfg.template or template
        self._system = cfg.system if cfg.system is not None else DEFAULT_SYSTEM
        self._verdicts = cfg.verdicts or verdicts
        self._params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=True,
                                      top_logprobs=cfg.top_logprobs, extra=cfg.params)
        self._slots = asyncio.Semaphore(cfg.max_concurrency)

    async def aclose(self) -> None:
        return None  # the backend and the fallback belong to whoever built them

    def _prompt(self, messages: Sequence[ChatMessage], **replies: str) -> list[ChatMessage]:
        cut = {k: _truncate(v, self._cfg.max_candidate_chars) for k, v in replies.items()}
        user = self._template.format(conversation=render_conversation(messages), **cut)
        head = [ChatMessage("system", self._system)] if self._system else []
        return [*head, ChatMessage("user", user)]

    async def _verdict(self, prompt: list[ChatMessage]) -> float:
        """log P(first verdict) - log P(second verdict) for one prompt."""
        async with self._slots:
            completions = await self._backend.complete(prompt, self._params, 1)
        return verdict_logit(completions[0], self._verdicts)

    async def _judged(self, work: Awaitable[T], messages: Sequence[ChatMessage],
                      candidates: Sequence[str]) -> T | Ranking:
        """``work``'s result, or the fallback's ranking when the judge fails or is late."""
        try:
            async with asyncio.timeout(self._cfg.timeout_s):
                return await work
        except (BlendError, TimeoutError, ValueError) as exc:
            if isinstance(exc, OverloadedError) and self._fallback is None:
                raise
            reason = (f"no verdict within {self._cfg.timeout_s:g}s" if isinstance(
                exc, TimeoutError) else f"{type(exc).__name__}: {exc}")
            if self._fallback is None:
                raise RankerError(f"{self.name}: {reason}") from exc
            logger.warning("%s failed (%s); ranking with %s instead", self.name, reason,
                           self._fallback.name)
            return await self._fallback.rank(messages, candidates)


class PointwiseJudge(_Judge):
    """Each candidate judged alone: score = log P(yes) - log P(no)."""

    def __init__(self, cfg: LLMJudgeRankerConfig, backend: Backend,
                 fallback: Ranker | None = None) -> None:
        super().__init__(cfg, backend, fallback, POINTWISE_TEMPLATE, ("Yes", "No"))

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        if len(candidates) < 2:
            return Ranking(scores=(0.0,) * len(candidates), ranks=(1,) * len(candidates))
        work = _gather([self._verdict(self._prompt(messages, candidate=c)) for c in candidates])
        judged = await self._judged(work, messages, candidates)
        return judged if isinstance(judged, Ranking) else _ranking(judged)


class PairwiseJudge(_Judge):
    """Every pair judged in both orders; also answers ``/v1/compare``."""

    def __init__(self, cfg: LLMJudgeRankerConfig, backend: Backend,
                 fallback: Ranker | None = None) -> None:
        super().__init__(cfg, backend, fallback, PAIRWISE_TEMPLATE, ("A", "B"))

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        count = len(candidates)
        if count < 2:
            return Ranking(scores=(0.0,) * count, ranks=(1,) * count)
        pairs = list(itertools.combinations(range(count), 2))
        work = _gather([self._both_orders(messages, candidates[i], candidates[j])
                        for i, j in pairs])
        judged = await self._judged(work, messages, candidates)
        if isinstance(judged, Ranking):
            return judged
        totals = [0.0] * count
        for (i, j), comparison in zip(pairs, judged, strict=True):
            totals[i] += comparison.combined
            totals[j] -= comparison.combined
        return _ranking([total / (count - 1) for total in totals])

    async def compare(self, messages: Sequence[ChatMessage], a: str, b: str) -> Comparison:
        judged = await self._judged(self._both_orders(messages, a, b), messages, [a, b])
        if isinstance(judged, Comparison):
            return judged
        gap = judged.scores[0] - judged.scores[1]  # the fallback's ranking of [a, b]
        return Comparison(logit_ab=gap / 2, logit_ba=-gap / 2)

    async def _both_orders(self, messages: Sequence[ChatMessage], a: str, b: str) -> Comparison:
        logit_ab, logit_ba = await _gather([
            self._verdict(self._prompt(messages, a=a, b=b)),
            self._verdict(self._prompt(messages, a=b, b=a)),
        ])
        return Comparison(logit_ab=logit_ab, logit_ba=logit_ba)


def build_llm_judge(cfg: LLMJudgeRankerConfig, backend: Backend,
                    fallback: Ranker | None = None) -> PointwiseJudge | PairwiseJudge:
    judge = PointwiseJudge if cfg.mode == "pointwise" else PairwiseJudge
    return judge(cfg, backend, fallback)


def render_conversation(messages: Sequence[ChatMessage]) -> str:
    """The conversation as the judge reads it: one ``Role: text`` block per message."""
    return "\n\n".join(f"{m.role.capitalize()}: {m.content}" for m in messages)


def verdict_logit(completion: Completion, verdicts: tuple[str, str]) -> float:
    """log P(verdicts[0]) - log P(verdicts[1]) at the first generated token (see module doc).

    ``completion.logprobs`` is OpenAI's ``choice.logprobs``:
    ``{"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}, ...]}``.
    """
    content = (completion.logprobs or {}).get("content") or []
    if not content or not isinstance(content[0], Mapping):
        raise ValueError("the judge's backend returned no logprobs (does it support them?)")
    first = content[0]
    top = {str(alt["token"]): float(alt["logprob"]) for alt in first.get("top_logprobs") or []
           if isinstance(alt, Mapping) and "token" in alt and "logprob" in alt}
    if "token" in first and "logprob" in first:
        top.setdefault(str(first["token"]), float(first["logprob"]))
    if not top:
        raise ValueError("the judge's logprobs list no token")
    wanted = [v.strip().casefold() for v in verdicts]
    mass = [0.0, 0.0]
    for token, logprob in top.items():
        key = token.strip().casefold()
        for index, verdict in enumerate(wanted):
            if key == verdict:
                mass[index] += math.exp(logprob)
    if mass == [0.0, 0.0]:
        return 0.0
    floor = math.exp(min(top.values()))  # a token not listed is at most this likely
    return math.log(max(mass[0], floor)) - math.log(max(mass[1], floor))


def _ranking(scores: Sequence[float]) -> Ranking:
    rounded = tuple(round(s, _DIGITS) + 0.0 for s in scores)  # + 0.0: no -0.0
    return Ranking(scores=rounded, ranks=tuple(int(r) for r in ranks_from_scores(rounded)))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


async def _gather(coros: Sequence[Awaitable[T]]) -> list[T]:
    """All results; the first failure cancels the other calls and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
