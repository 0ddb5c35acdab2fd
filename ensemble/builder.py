"""Build what a :class:`~ensemble.engine.BlendEngine` serves from a :class:`BlendgateConfig`.

Backends, rankers (one per distinct config) and fusers load off-loop: backends with a
``start()`` coroutine (local models) start concurrently with the ranker and fuser models. Each
component logs one line when it has loaded. Anything built before a failure is closed again
before the error propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ensemble.backends.base import Backend
from ensemble.concurrency import cancel_and_wait, gather_or_cancel
from ensemble.config import (
    BlendgateConfig,
    EnsembleModelConfig,
    FuserConfig,
    MemberConfig,
    NoRankerConfig,
    SingleModelConfig,
)
from ensemble.fanout import FanoutMember
from ensemble.fusers.base import Fuser
from ensemble.fusers.factory import FuserBuilder, build_fuser
from ensemble.rankers.base import Ranker
from ensemble.rankers.factory import RankerBuilder, RankerCache, build_ranker
from ensemble.shared import Closable, SharedByConfig
from ensemble.types import SamplingParams

logger = logging.getLogger("ensemble.engine")  # the load lines keep the engine's logger
T = TypeVar("T")


@dataclass(frozen=True)
class Member:
    label: str  # the backend name; ``name#i`` when one backend is listed twice
    backend: Backend
    cfg: MemberConfig


@dataclass(frozen=True)
class Ensemble:
    """One ensemble model, ready to serve."""

    cfg: EnsembleModelConfig
    members: tuple[Member, ...]
    ranker: Ranker
    fuser: Fuser
    task_backend: Backend | None = None  # answers background tasks (cfg.tasks) alone

    def fanout_members(self, params: SamplingParams) -> list[FanoutMember]:
        """Request params first; each member's configured params fill what the request left
        unset (``SamplingParams.merged``)."""
        return [
            FanoutMember(m.label, m.backend, m.cfg.samples, params.merged(m.cfg.params),
                         self.cfg.member_timeout_s)
            for m in self.members
        ]


@dataclass
class EngineParts:
    """Everything the engine serves with, and what it must close."""

    rankers: RankerCache
    fusers: SharedByConfig[FuserConfig, Fuser]
    owned_backends: list[Backend] = field(default_factory=list)  # built here, closed by the engine
    ensembles: dict[str, Ensemble] = field(default_factory=dict)
    singles: dict[str, Backend] = field(default_factory=dict)
    single_deadlines: dict[str, float] = field(default_factory=dict)  # model id -> deadline_s
    service_ranker: Ranker | None = None
    service_fuser: Fuser | None = None

    async def aclose(self) -> None:
        backends, self.owned_backends = self.owned_backends, []
        await close_all([self.fusers, self.rankers, *backends])


def member_labels(model: EnsembleModelConfig) -> list[str]:
    """Each member's label in reports and metrics: its backend's name, ``name#i`` when one
    backend is listed twice."""
    names = [m.backend for m in model.members]
    return [m.backend if names.count(m.backend) == 1 else f"{m.backend}#{i}"
            for i, m in enumerate(model.members)]


async def build_parts(
    config: BlendgateConfig,
    *,
    backends: Mapping[str, Backend] | None = None,
    ranker_builder: RankerBuilder = build_ranker,
    fuser_builder: FuserBuilder = build_fuser,
) -> EngineParts:
    """See ``BlendEngine.from_config``: ``backends`` injects ready backends (not closed by the
    engine); the builders replace the ranker and fuser factories."""
    owned: Mapping[str, Backend] = {}
    if backends is None:
        from ensemble.backends.factory import build_backends

        owned = build_backends(config)
    ready = owned if backends is None else backends
    parts = EngineParts(
        RankerCache(ranker_builder),
        # one fuser per distinct config, like rankers: ensembles with the same GenFuser share it
        SharedByConfig(lambda cfg: fuser_builder(cfg, ready)),
        owned_backends=list(owned.values()))
    starting: asyncio.Future[list[None]] | None = None
    try:
        if parts.owned_backends:
            # local models load while the rankers and fusers below load theirs
            starting = asyncio.ensure_future(gather_or_cancel(
                [_logged(f"backend {b.name}", _start(b)) for b in parts.owned_backends]))
        parts.rankers.bind_backends(ready)  # an llm_judge ranker calls one of them
        await _add_models(parts, config, ready)
        await _add_services(parts, config)
        if starting is not None:
            await starting
    except BaseException:
        if starting is not None:
            await cancel_and_wait([starting])
        await parts.aclose()
        raise
    return parts


async def _add_models(
    parts: EngineParts, config: BlendgateConfig, backends: Mapping[str, Backend]
) -> None:
    for model in config.models:
        if isinstance(model, SingleModelConfig):
            parts.singles[model.id] = backends[model.backend]
            if model.deadline_s is not None:
                parts.single_deadlines[model.id] = model.deadline_s
            continue
        fuser = await _logged(f"fuser {model.fuser.type} of {model.id}",
                              parts.fusers.get(model.fuser))
        ranker = await _logged(f"ranker {model.ranker.type} of {model.id}",
                               parts.rankers.get(model.ranker))
        tasks = backends[model.tasks.backend] if model.tasks is not None else None
        parts.ensembles[model.id] = Ensemble(model, _members(model, backends), ranker, fuser,
                                             tasks)
    for name in config.served_model_ids():
        if name not in parts.ensembles and name not in parts.singles:
            parts.singles[name] = backends[name]


async def _add_services(parts: EngineParts, config: BlendgateConfig) -> None:
    """The ranker behind /v1/rank and /v1/compare, and the fuser behind /v1/fuse."""
    ensembles = parts.ensembles.values()
    # /v1/rank and /v1/compare need a ranking model: `type: none` only keeps the members'
    # order, so it never serves them (the routes answer 501 instead)
    if config.rank_service is not None:
        if not isinstance(config.rank_service, NoRankerConfig):
            parts.service_ranker = await _logged(
                f"ranker {config.rank_service.type} of rank_service",
                parts.rankers.get(config.rank_service))
    else:
        parts.service_ranker = next((e.ranker for e in ensembles
                                     if not isinstance(e.cfg.ranker, NoRankerConfig)), None)
    if config.fuse_service is not None:
        parts.service_fuser = await _logged(f"fuser {config.fuse_service.type} of fuse_service",
                                            parts.fusers.get(config.fuse_service))
    else:
        parts.service_fuser = next((e.fuser for e in ensembles), None)


def _members(model: EnsembleModelConfig, backends: Mapping[str, Backend]) -> tuple[Member, ...]:
    return tuple(Member(label, backends[m.backend], m)
                 for label, m in zip(member_labels(model), model.members, strict=True))


async def _start(backend: Backend) -> None:
    """Load a local model now rather than on its first request, when the backend can."""
    start = getattr(backend, "start", None)
    if start is not None:
        await start()


async def _logged(component: str, loading: Awaitable[T]) -> T:
    """Await ``loading`` and log one line saying how long ``component`` took to load (a shared
    ranker already loaded shows 0.0 s)."""
    started = time.perf_counter()
    result = await loading
    logger.info("loaded %s in %.1f s", component, time.perf_counter() - started)
    return result


async def close_all(closables: Sequence[Closable]) -> None:
    """Close each in turn; one failing to close is logged and the rest are still closed."""
    for item in closables:
        try:
            await item.aclose()
        except Exception:  # closing the rest matters more than one failure
            logger.exception("closing %r failed", item)
