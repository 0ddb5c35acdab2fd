"""The gateway's config: the library's :class:`BlendgateConfig` plus ``server:`` and ``ray:``.

The YAML file is one tree; the sections that configure the HTTP application (API keys, CORS,
limits, drain, Ray Serve deployments) are defined here, not in the library. Load files with
``load_config`` / ``parse_config`` of this module; the library's own loader refuses these
sections with a message pointing here. ``server.default_max_tokens`` reaches the engine
through ``GatewayConfig.backend_configs`` (each backend's lowest-priority ``max_tokens``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ensemble import config as library
from ensemble import with_default_max_tokens
from ensemble.config import BackendConfig, BlendgateConfig, StrictModel
from gateway.ray_config import RayConfig


class ServerConfig(StrictModel):
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = "BLENDGATE_API_KEYS"  # comma-separated keys, added to api_keys
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_n: int = Field(8, ge=1)
    max_candidates: int = Field(32, ge=1)
    max_tokens_limit: int | None = None
    # max_tokens for a request that sends none (chat UIs never do): every member, the LLM
    # fuser and pass-through calls get it, below request, member, fuser and backend params.
    default_max_tokens: int | None = Field(None, ge=1)
    # On SIGTERM the server stops accepting, then gives requests in flight (long ensembles and
    # streams) this long to finish before closing them. Kubernetes: keep the pod's
    # terminationGracePeriodSeconds above it (deploy/k8s/).
    drain_grace_s: float = Field(30.0, gt=0)
    # Browser origins allowed to call the API (CORS), e.g. ["https://chat.example.com"];
    # ["*"] allows any. Empty (the default): no CORS headers, browsers block other origins.
    cors_origins: list[str] = Field(default_factory=list)
    # False: the ``blend`` transparency field (candidates, failures, timings) is never sent,
    # whatever the request asks.
    allow_return_candidates: bool = True
    access_log: bool = True  # one line per request on the blendgate.access logger

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServerConfig:
        limit, default = self.max_tokens_limit, self.default_max_tokens
        if limit is not None and default is not None and default > limit:
            raise ValueError(f"default_max_tokens={default} exceeds max_tokens_limit={limit}")
        return self


class GatewayConfig(BlendgateConfig):
    server: ServerConfig = Field(default_factory=ServerConfig)
    ray: RayConfig = Field(default_factory=RayConfig)  # used only by --engine ray

    def backend_configs(self) -> dict[str, BackendConfig]:
        """``server.default_max_tokens`` becomes each backend's lowest-priority ``max_tokens``."""
        default = self.server.default_max_tokens
        return {name: with_default_max_tokens(cfg, default) for name, cfg in self.backends.items()}


def as_gateway_config(config: BlendgateConfig) -> GatewayConfig:
    """``config`` as the gateway serves it: a library config gets the default ``server:`` and
    ``ray:`` sections."""
    if isinstance(config, GatewayConfig):
        return config
    return GatewayConfig.model_validate(config.model_dump(mode="json"))


def parse_config(data: Any, *, source: str | Path = "<config>") -> GatewayConfig:
    return library.parse_config(data, source=source, schema=GatewayConfig)


def load_config(path: str | Path) -> GatewayConfig:
    return library.load_config(path, schema=GatewayConfig)
