"""Process settings from the environment (``BLENDGATE_*``): the only module that reads env.

``GatewaySettings`` says where the YAML config lives and how to serve it; everything about the
ensemble itself is in that YAML (every variable is listed in the README, "Environment").
``load_settings`` turns a bad value (``BLENDGATE_PORT=abc``) into a one-line ``ConfigError``
that names the variable. ``read_api_keys`` adds the keys from the env var the config names
(``server.api_keys_env``) to the ones written in the config.

The default config ships inside the package (``gateway/configs/default.yaml``, package data),
so ``blendgate serve`` without ``--config`` works from any directory and from a wheel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ensemble.config import readable_errors
from ensemble.errors import ConfigError
from gateway.config import ServerConfig

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
ENV_PREFIX = "BLENDGATE_"
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    config: Path | None = None  # None: the default config shipped in the package

    @field_validator("config", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # BLENDGATE_CONFIG= (compose's ${X:-})
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: LogLevel = "info"


def load_settings() -> GatewaySettings:
    """Settings from ``BLENDGATE_*``; a bad value is a ``ConfigError`` naming the variable."""
    try:
        return GatewaySettings()
    except ValidationError as exc:
        (key, message), *rest = readable_errors(exc, GatewaySettings)
        more = f" (and {len(rest)} more)" if rest else ""
        name = ENV_PREFIX + key.upper() if key else "environment"
        value = os.environ.get(name)
        got = f" (got {value!r})" if value is not None else ""
        raise ConfigError(f"{message}{got}{more}", key=name) from None


def default_config_path() -> Path:
    """The default config shipped inside the package (offline SmolLM2 blend)."""
    return DEFAULT_CONFIG


def read_api_keys(server: ServerConfig, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    keys = set(server.api_keys)
    if server.api_keys_env:
        keys.update(k.strip() for k in env.get(server.api_keys_env, "").split(","))
    keys.discard("")
    return frozenset(keys)


def package_version() -> str:
    try:
        return metadata.version("blendgate")
    except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown (not installed)"
