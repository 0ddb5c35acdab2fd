"""Selection and fusion policies scored off one candidate pool, and their summary.

Per prompt, each policy picks an answer (``Pick``) from what was generated once:

* ``member:<label>``: that member alone, its first sample;
* ``random``: a seeded random candidate of the pool (seed and prompt id decide it);
* ``rank:<ranker>``: the candidate a configured ranker ranks first;
* ``oracle``: the candidate the judge scores highest, the ceiling of selection;
* ``fuse:<ensemble>``: the ensemble's fuser over its ranker's top-k (generated once more);
* ``adaptive:<ensemble>``: its cascade / skip_fusion policy (``pool_adaptive``).

Cost of a pick: a single candidate's latency and tokens for a member or the random pick; for a
ranked pick the slowest candidate (the fan-out waits for it) plus the ranking time, and every
candidate's tokens; a fused pick adds the fusion's time and tokens. The oracle costs what the
whole pool costs (its judge is no part of a served answer). Ties go to the earlier candidate,
so float noise never picks.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ensemble.experiments.evaluation.pool import Candidate
from ensemble.experiments.evaluation.pool_scoring import Judged, PoolRanking
from ensemble.experiments.events import EvalAnswer
from ensemble.experiments.stats import bootstrap_interval, percentile, verdict_value
from ensemble.rankers.ranks import ranks_from_scores
from ensemble.types import Ranking

ORACLE = "oracle"
RANDOM = "random"


@dataclass(frozen=True)
class Pick:
    text: str
    latency_s: float
    completion_tokens: int
    path: str | None = None  # adaptive policies: which path answered (``cascade:<i>``...)
    stage: int | None = None  # and at which stage


def member_policy(label: str) -> str:
    return f"member:{label}"


def fuse_policy(ensemble_id: str) -> str:
    return f"fuse:{ensemble_id}"


def as_ranking(ranking: PoolRanking) -> Ranking:
    return Ranking(ranking.scores, tuple(ranks_from_scores(ranking.scores).tolist()))


def ranked_order(ranking: PoolRanking) -> list[int]:
    """Pool indices best first, as the engine orders them (competition ranks, ties in pool
    order)."""
    return as_ranking(ranking).order()


@dataclass(frozen=True)
class PartRanking:
    """A ranker's ranking of one prompt's candidates: the whole pool, or the part of it that
    one ensemble has (``candidates``, in pool order; ``ranking.scores`` follow them)."""

    candidates: Sequence[Candidate]
    ranking: PoolRanking

    def best(self) -> Candidate:
        return self.candidates[ranked_order(self.ranking)[0]]

    def fan_out_latency_s(self) -> float:
        """The slowest candidate (a fan-out waits for it) plus the ranking."""
        return _slowest(self.candidates) + self.ranking.elapsed_s

    def completion_tokens(self) -> int:
        return sum(c.answer.completion_tokens for c in self.candidates)


def selection_picks(prompt_id: str, pool: Sequence[Candidate],
                    rankings: Mapping[str, PartRanking], judged: Judged,
                    seed: int) -> dict[str, Pick]:
    """Every selection policy's pick on one prompt (``rankings``: policy -> this prompt's
    ranking; a ranker that failed on the prompt is absent and that policy has no pick)."""
    picks = {member_policy(c.member): _alone(c) for c in pool if c.sample == 0}
    picks[RANDOM] = _alone(pool[random.Random(f"{seed}:{prompt_id}").randrange(len(pool))])
    for policy, part in rankings.items():
        picks[policy] = Pick(part.best().answer.text, part.fan_out_latency_s(),
                             part.completion_tokens())
    oracle = max(range(len(pool)), key=lambda i: (judged.scores[pool[i].answer.text], -i))
    picks[ORACLE] = Pick(pool[oracle].answer.text, _slowest(pool),
                         sum(c.answer.completion_tokens for c in pool))
    return picks


def fused_pick(part: PartRanking, fused: EvalAnswer) -> Pick:
    return Pick(fused.text, part.fan_out_latency_s() + fused.latency_s,
                part.completion_tokens() + fused.completion_tokens)


def _slowest(candidates: Sequence[Candidate]) -> float:
    return max(c.answer.latency_s for c in candidates)


def _alone(candidate: Candidate) -> Pick:
    return Pick(candidate.answer.text, candidate.answer.latency_s,
                candidate.answer.completion_tokens)


def best_member(members: Sequence[str], picks: Mapping[str, Mapping[str, Pick]],
                judged: Mapping[str, Judged]) -> str:
    """The member whose first samples have the highest mean judge score (earlier wins ties)."""
    def mean_score(label: str) -> float:
        scores = [judged[p].scores[mine[member_policy(label)].text] for p, mine in picks.items()]
        return round(sum(scores) / len(scores), 6) if scores else 0.0

    return max(members, key=lambda label: (mean_score(label), -members.index(label)))


def summarise_policy(policy: str, baseline: str, picks: Mapping[str, Mapping[str, Pick]],
                     judged: Mapping[str, Judged], tie_margin: float,
                     seed: int) -> dict[str, object]:
    """One policy over the scored prompts: win rate against ``baseline`` (a missing pick is a
    loss: the client got an error) with its paired bootstrap interval, mean judge score,
    completion tokens and latency."""
    outcomes, scores, latencies, tokens = [], [], [], []
    for prompt_id, mine in picks.items():
        pick, theirs = mine.get(policy), mine[baseline]
        if pick is None:
            outcomes.append("loss")
            continue
        outcomes.append(judged[prompt_id].outcome(theirs.text, pick.text, tie_margin))
        scores.append(judged[prompt_id].scores[pick.text])
        latencies.append(pick.latency_s)
        tokens.append(pick.completion_tokens)
    values = [verdict_value(o) for o in outcomes]
    interval = bootstrap_interval(values, seed=seed)
    paths = [p.path for mine in picks.values() if (p := mine.get(policy)) and p.path]
    shares = {path: round(paths.count(path) / len(paths), 6) for path in sorted(set(paths))}
    return {**({"paths": shares} if shares else {}),
        "policy": policy, "n": len(outcomes), "no_answer": len(outcomes) - len(scores),
        "wins": outcomes.count("win"), "ties": outcomes.count("tie"),
        "losses": outcomes.count("loss"),
        "win_rate": round(sum(values) / len(values), 6) if values else None,
        "low": interval[0] if interval else None, "high": interval[1] if interval else None,
        "judge_score_mean": _mean(scores), "completion_tokens_mean": _mean(tokens),
        "latency_p50_s": percentile(latencies, 50), "latency_p90_s": percentile(latencies, 90),
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None
