"""Build the ranker a ``RankerConfig`` names, and share one instance per identical config.

Ranking models are imported only when configured (PairRM and reward models pull in torch and
DeBERTa; the consensus ranker MiniLM). :class:`RankerCache` belongs to whoever builds the
rankers (the engine), so one loaded model serves every ensemble, and ``/v1/rank``, that asks
for the same config; it is not a module global.

The ``llm_judge`` ranker loads nothing: it calls one of the configured backends, which the
cache is given (``bind_backends``), and it is built in-process whatever ``build`` is. Its
``fallback`` ranker comes from the same cache (one MiniLM for a consensus fallback and a
consensus ensemble).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ensemble.backends.base import Backend
from ensemble.config import (
    ConsensusRankerConfig,
    LLMJudgeRankerConfig,
    NoRankerConfig,
    PairRMRankerConfig,
    RankerConfig,
    RemoteRankerConfig,
    RewardModelRankerConfig,
)
from ensemble.errors import ConfigError
from ensemble.rankers.base import Ranker
from ensemble.rankers.passthrough import PassthroughRanker
from ensemble.shared import SharedByConfig


async def build_ranker(
    cfg: RankerConfig, backends: Mapping[str, Backend] | None = None
) -> Ranker:
    """Return a ready ranker; models load off the event loop inside ``load``. ``backends``
    serve an ``llm_judge`` ranker (its fallback chain is built here too, unshared)."""
    ranker: Ranker
    if isinstance(cfg, LLMJudgeRankerConfig):
        fallback = None if cfg.fallback is None else await build_ranker(cfg.fallback, backends)
        ranker = build_judge(cfg, backends or {}, fallback)
    elif isinstance(cfg, NoRankerConfig):
        ranker = PassthroughRanker()
    elif isinstance(cfg, ConsensusRankerConfig):
        from ensemble.rankers.consensus import ConsensusRanker

        ranker = await ConsensusRanker.load(cfg)
    elif isinstance(cfg, PairRMRankerConfig):
        from ensemble.rankers.pairrm import PairRMRanker

        ranker = await PairRMRanker.load(cfg)
    elif isinstance(cfg, RewardModelRankerConfig):
        from ensemble.rankers.reward_model import RewardModelRanker

        ranker = await RewardModelRanker.load(cfg)
    elif isinstance(cfg, RemoteRankerConfig):
        from ensemble.rankers.remote import RemoteRanker

        ranker = RemoteRanker(cfg)
    else:
        raise ConfigError(f"unknown ranker type {getattr(cfg, 'type', cfg)!r}", key="ranker.type")
    return ranker


def build_judge(cfg: LLMJudgeRankerConfig, backends: Mapping[str, Backend],
                fallback: Ranker | None) -> Ranker:
    from ensemble.rankers.llm_judge import build_llm_judge

    backend = backends.get(cfg.backend)
    if backend is None:
        raise ConfigError(f"llm_judge: unknown backend {cfg.backend!r}; defined backends: "
                          f"{sorted(backends)}", key="ranker.backend")
    return build_llm_judge(cfg, backend, fallback)


RankerBuilder = Callable[[RankerConfig], Awaitable[Ranker]]


class RankerCache(SharedByConfig[RankerConfig, Ranker]):
    """One ranker per distinct config (:class:`~ensemble.shared.SharedByConfig`).

    ``build`` makes a ranker from its config (default :func:`build_ranker`; the Ray Serve
    application passes one that returns a client of a ranker deployment).
    """

    def __init__(self, build: RankerBuilder = build_ranker,
                 backends: Mapping[str, Backend] | None = None) -> None:
        super().__init__(build)
        self._backends: Mapping[str, Backend] = dict(backends or {})
        self._judges: dict[str, Ranker] = {}  # they own nothing: nothing to close

    def bind_backends(self, backends: Mapping[str, Backend]) -> None:
        """The backends ``llm_judge`` rankers call (the engine builds them after the cache)."""
        self._backends = dict(backends)

    async def get(self, cfg: RankerConfig) -> Ranker:
        if not isinstance(cfg, LLMJudgeRankerConfig):
            return await super().get(cfg)
        key = cfg.model_dump_json()
        if key not in self._judges:
            fallback = None if cfg.fallback is None else await self.get(cfg.fallback)
            # no await between this check and the store: one judge per config
            self._judges.setdefault(key, build_judge(cfg, self._backends, fallback))
        return self._judges[key]
