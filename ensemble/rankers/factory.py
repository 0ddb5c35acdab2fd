"""Build the ranker a ``RankerConfig`` names, and share one instance per identical config.

Ranking models are imported only when configured (PairRM and reward models pull in torch and
DeBERTa; the consensus ranker MiniLM). :class:`RankerCache` belongs to whoever builds the
rankers (the engine), so one loaded model serves every ensemble, and ``/v1/rank``, that asks
for the same config; it is not a module global.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ensemble.config import (
    ConsensusRankerConfig,
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


async def build_ranker(cfg: RankerConfig) -> Ranker:
    """Return a ready ranker; models load off the event loop inside ``load``."""
    ranker: Ranker
    if isinstance(cfg, NoRankerConfig):
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


RankerBuilder = Callable[[RankerConfig], Awaitable[Ranker]]


class RankerCache(SharedByConfig[RankerConfig, Ranker]):
    """One ranker per distinct config (:class:`~ensemble.shared.SharedByConfig`).

    ``build`` makes a ranker from its config (default :func:`build_ranker`; the Ray Serve
    application passes one that returns a client of a ranker deployment).
    """

    def __init__(self, build: RankerBuilder = build_ranker) -> None:
        super().__init__(build)
