"""``adaptive:<ensemble>``: an ensemble's adaptive policy (``cascade``, ``skip_fusion``; strategy
blend) scored off the candidate pool, as ``ensemble.selection`` would answer.

* Each cascade stage in order: its members' part of the pool (matched into it like an
  ensemble's members), ranked by the ensemble's ranker; accepted when
  ``Confidence(margin, agreement).accepted_by(stage.accept)``: its top candidate answers.
* Else the full stage (the ensemble's own part): with ``skip_fusion`` accepted its top
  candidate answers, else the fused answer of ``fuse:<ensemble>`` (with fuser ``none`` that
  already is the top candidate; no fused answer on a prompt: no answer there).

Agreement is the top candidate's consensus score: the ranking's own score when the ranker's
config is ``similarity_ranker()``, else that config's ranking of the same part (a ranked
policy of its own, cached like any), read at the ranker's top index.

Cost: latencies add up over the stages tried (each: its slowest candidate, its ranking and
its similarity ranking), plus the fusion's when fused; tokens add up over every stage tried
plus the fusion's. A cascade's full stage reuses the pool's samples, where the engine asks
its members again (fresh samples): its cost is counted as if asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ensemble.adaptive.confidence import Confidence, margin
from ensemble.config import ConfidenceConfig, EnsembleModelConfig, RankerConfig
from ensemble.experiments.evaluation.policies import PartRanking, Pick, as_ranking
from ensemble.experiments.evaluation.pool import PoolMember, Slots, ensemble_slots, member_slots

RankEntry = tuple[RankerConfig, Slots]  # a ranked policy: which ranker, over which part


@dataclass(frozen=True)
class StageView:
    """One stage of an adaptive policy, by the ranked policies it reads."""

    ranked: str  # the ensemble's ranker over the stage's part
    similarity: str | None  # the similarity ranker over the same part; None: not needed
    rule: ConfidenceConfig | None  # None: never accepted alone (the full stage fuses)


@dataclass(frozen=True)
class AdaptivePlan:
    policy: str
    stages: tuple[StageView, ...]  # the cascade stages, in order
    full: StageView  # the ensemble's own members
    fuse: str  # the fused policy answering when nothing is accepted


def adaptive_policy(ensemble_id: str) -> str:
    return f"adaptive:{ensemble_id}"


def is_adaptive(ensemble: EnsembleModelConfig) -> bool:
    return ensemble.strategy == "blend" and (ensemble.skip_fusion is not None
                                             or bool(ensemble.cascade))


def _similarity(ensemble: EnsembleModelConfig, rule: ConfidenceConfig | None) -> bool:
    """Whether ``rule``'s agreement needs a ranking of its own (the ranker is another config)."""
    return rule is not None and rule.agreement is not None \
        and ensemble.ranker != ensemble.similarity_ranker()


def adaptive_rankings(ensemble: EnsembleModelConfig,
                      members: Sequence[PoolMember]) -> list[tuple[str, RankEntry]]:
    """The rankings an adaptive policy needs beyond the ensemble's own, each with the suffix
    of its ranked policy's name (``stage<i>``; "" for the full stage)."""
    found: list[tuple[str, RankEntry]] = []
    for index, stage in enumerate(ensemble.cascade):
        slots = member_slots(stage.members, members)
        found.append((f"stage{index}", (ensemble.ranker, slots)))
        if _similarity(ensemble, stage.accept):
            found.append((f"stage{index}", (ensemble.similarity_ranker(), slots)))
    if _similarity(ensemble, ensemble.skip_fusion):
        found.append(("", (ensemble.similarity_ranker(), ensemble_slots(ensemble, members))))
    return found


def adaptive_plan(ensemble: EnsembleModelConfig, members: Sequence[PoolMember],
                  name_of: Callable[[RankEntry], str], fuse: str) -> AdaptivePlan:
    """``name_of``: a ranking's ranked policy (every one ``adaptive_rankings`` lists)."""
    def view(cfgs_slots: Slots, rule: ConfidenceConfig | None) -> StageView:
        similarity = (name_of((ensemble.similarity_ranker(), cfgs_slots))
                      if _similarity(ensemble, rule) else None)
        return StageView(name_of((ensemble.ranker, cfgs_slots)), similarity, rule)

    stages = tuple(view(member_slots(s.members, members), s.accept) for s in ensemble.cascade)
    return AdaptivePlan(adaptive_policy(ensemble.id), stages,
                        view(ensemble_slots(ensemble, members), ensemble.skip_fusion), fuse)


def adaptive_pick(plan: AdaptivePlan, rankings: Mapping[str, PartRanking],
                  fused: Pick | None) -> Pick | None:
    """The policy's answer on one prompt (``rankings``: ranked policy -> this prompt's
    ranking; ``fused``: the ``fuse:`` pick). None when a ranking it needs failed (the engine
    would answer an error) or, escalated to fusing, the fusion did."""
    latency, tokens = 0.0, 0
    for index, stage in enumerate((*plan.stages, plan.full)):
        part = rankings.get(stage.ranked)
        similarity = rankings.get(stage.similarity) if stage.similarity else None
        if part is None or (stage.similarity and similarity is None):
            return None
        rank_s = similarity.ranking.elapsed_s if similarity is not None else 0.0
        if stage is plan.full and _accepted(stage.rule, part, similarity) is None:
            if fused is None:
                return None
            return Pick(fused.text, latency + rank_s + fused.latency_s,
                        tokens + fused.completion_tokens, "fused", index)
        latency += part.fan_out_latency_s() + rank_s
        tokens += part.completion_tokens()
        if stage is plan.full or _accepted(stage.rule, part, similarity) is not None:
            path = "skip_fusion" if stage is plan.full else f"cascade:{index}"
            return Pick(part.best().answer.text, latency, tokens, path, index)
    return None  # not reached: the full stage always answers


def _accepted(rule: ConfidenceConfig | None, part: PartRanking,
              similarity: PartRanking | None) -> str | None:
    return None if rule is None else confidence(rule, part, similarity).accepted_by(rule)


def confidence(rule: ConfidenceConfig, part: PartRanking,
               similarity: PartRanking | None) -> Confidence:
    """The margin and agreement ``rule`` asks for, as ``ensemble.adaptive.confidence.measure``
    measures them (with fewer than two candidates: none, and nothing is accepted)."""
    if len(part.candidates) < 2:
        return Confidence()
    ranking = as_ranking(part.ranking)
    agreement = None
    if rule.agreement is not None:
        source = similarity if similarity is not None else part
        agreement = source.ranking.scores[ranking.order()[0]]
    return Confidence(margin(ranking) if rule.margin is not None else None, agreement)
