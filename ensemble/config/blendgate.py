"""``BlendgateConfig``: the whole library config (backends, models, services, experiments).

Application settings are not here: the gateway's ``GatewayConfig`` (gateway/config.py) adds
``server:`` and ``ray:`` on top of it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ensemble.config.backends import BackendConfig
from ensemble.config.base import StrictModel
from ensemble.config.experiments import ExperimentConfig
from ensemble.config.fusers import FuserConfig
from ensemble.config.models import ModelConfig
from ensemble.config.rankers import RankerConfig
from ensemble.config.references import check_references
from ensemble.config.store import StoreConfig


class BlendgateConfig(StrictModel):
    backends: dict[str, BackendConfig]
    models: list[ModelConfig] = Field(default_factory=list)
    # Ranker behind POST /v1/rank and /v1/compare (PairRM as a service). None: the first
    # ensemble's ranker.
    rank_service: RankerConfig | None = None
    # Fuser behind POST /v1/fuse (a fuser as a service, for remote fusers). None: the first
    # ensemble's fuser.
    fuse_service: FuserConfig | None = None
    experiments: list[ExperimentConfig] = Field(default_factory=list)
    # The experiment store; None: SQLite in ./data when experiments are configured, else none.
    store: StoreConfig | None = None

    @model_validator(mode="after")
    def _check_references(self) -> BlendgateConfig:
        check_references(self)
        return self

    def backend_configs(self) -> dict[str, BackendConfig]:
        """The backends as ``build_backends`` builds them: as written here. A config that
        adds application settings layers its defaults on by overriding this (the gateway's
        ``server.default_max_tokens``), so ``backends`` itself stays as written."""
        return dict(self.backends)

    def store_config(self) -> StoreConfig | None:
        """The store to open: the configured one, or the SQLite default for experiments."""
        if self.store is not None:
            return self.store
        return StoreConfig() if self.experiments else None

    def served_model_ids(self, *, include_experiments: bool = False) -> list[str]:
        """Ensembles first, then every exposed backend under its own name (then experiments, when
        asked: they are served by the gateway, not the engine)."""
        listed = [m.id for m in self.models]
        exposed = [n for n, b in self.backends.items() if b.expose and n not in listed]
        experiments = [e.id for e in self.experiments] if include_experiments else []
        return listed + exposed + experiments
