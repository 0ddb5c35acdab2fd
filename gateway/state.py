"""``GatewayState``: everything app-scoped, built once by ``create_app`` and kept on
``app.state`` under one typed name, so routes read typed fields instead of loose attributes.

``config`` and ``experiments`` are the only fields that change after start-up: the lifespan
sets ``experiments`` once the engine is ready, and ``POST /admin/reload`` (or SIGHUP) replaces
``config`` with one assignment after the runtime has taken the new experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette

from ensemble.experiments import ExperimentRuntime
from gateway.auth import APIKeys
from gateway.config import GatewayConfig
from gateway.convert import RequestLimits
from gateway.drain import Drain
from gateway.loading import EngineLoading
from gateway.metrics import GatewayMetrics

STATE_KEY = "gateway"  # app.state attribute holding the GatewayState


@dataclass
class GatewayState:
    config: GatewayConfig
    config_path: Path | None  # the file POST /admin/reload (and SIGHUP) re-reads
    loading: EngineLoading
    drain: Drain  # DrainingServer starts it on SIGTERM
    limits: RequestLimits
    api_keys: APIKeys
    metrics: GatewayMetrics
    experiments: ExperimentRuntime | None = None  # set by the lifespan once the engine is ready

    def attach(self, app: Starlette) -> None:
        setattr(app.state, STATE_KEY, self)


def gateway_state(app: Starlette) -> GatewayState | None:
    """The app's state, or None for an app ``create_app`` did not build."""
    state = getattr(app.state, STATE_KEY, None)
    return state if isinstance(state, GatewayState) else None


def state_of(app: Starlette) -> GatewayState:
    """The state of an app built by ``create_app``."""
    state = gateway_state(app)
    if state is None:
        raise RuntimeError("this app was not built by gateway.app.create_app")
    return state
