"""The checks that names in a config refer to each other: backends of models, rankers, fusers
and judges; experiment arms; unique ids. ``BlendgateConfig`` runs them once it is parsed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ensemble.config.fusers import llm_fuser
from ensemble.config.models import EnsembleModelConfig, ModelConfig
from ensemble.config.rankers import ranker_backends

if TYPE_CHECKING:
    from ensemble.config.blendgate import BlendgateConfig


def check_references(config: BlendgateConfig) -> None:
    """Raise ``ValueError`` (a validation error of the whole config) at the first bad name."""
    _check_models(config)
    _check_services(config)
    _check_experiments(config)


def model_backends(model: ModelConfig) -> list[str]:
    """Every backend a served model calls: members (or its one backend), the LLM fuser or a
    GenFuser's fallback, an llm_judge ranker chain, the background-task backend."""
    if not isinstance(model, EnsembleModelConfig):
        return [model.backend]
    names = [m.backend for m in model.members]
    llm = llm_fuser(model.fuser)
    if llm is not None:
        names.append(llm.backend)
    names += ranker_backends(model.ranker)
    if model.tasks is not None:
        names.append(model.tasks.backend)
    return names


def _check_models(config: BlendgateConfig) -> None:
    ids: set[str] = set()
    for index, model in enumerate(config.models):
        if model.id in ids:
            raise ValueError(f"models[{index}].id: duplicate model id {model.id!r}")
        ids.add(model.id)
        for name in model_backends(model):
            if name not in config.backends:
                raise ValueError(
                    f"models[{index}] ({model.id}): unknown backend {name!r}; "
                    f"defined backends: {sorted(config.backends)}"
                )
        if isinstance(model, EnsembleModelConfig):
            total = sum(m.samples for m in model.members)
            if model.min_candidates > total:
                raise ValueError(
                    f"models[{index}] ({model.id}).min_candidates={model.min_candidates} "
                    f"exceeds the {total} samples its members produce"
                )


def _check_services(config: BlendgateConfig) -> None:
    for name in ranker_backends(config.rank_service):
        if name not in config.backends:
            raise ValueError(f"rank_service: unknown backend {name!r}; defined backends: "
                             f"{sorted(config.backends)}")
    fallback = llm_fuser(config.fuse_service)
    if fallback is not None and fallback.backend not in config.backends:
        raise ValueError(f"fuse_service: unknown backend {fallback.backend!r}; "
                         f"defined backends: {sorted(config.backends)}")


def _check_experiments(config: BlendgateConfig) -> None:
    served = set(config.served_model_ids())
    seen: set[str] = set()
    for index, experiment in enumerate(config.experiments):
        if experiment.id in served or experiment.id in seen:
            raise ValueError(f"experiments[{index}].id: {experiment.id!r} is already a "
                             "served model or experiment id")
        seen.add(experiment.id)
        for arm in experiment.arms:
            if arm.model not in served:
                raise ValueError(
                    f"experiments[{index}] ({experiment.id}): arm {arm.name!r} names "
                    f"unknown model {arm.model!r}; served models: {sorted(served)}")
        for name in ranker_backends(experiment.judge):
            if name not in config.backends:
                raise ValueError(f"experiments[{index}] ({experiment.id}).judge: unknown "
                                 f"backend {name!r}; defined backends: "
                                 f"{sorted(config.backends)}")
