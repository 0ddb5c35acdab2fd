"""Process settings from the environment (``BLENDGATE_*``): the only module that reads env.

``GatewaySettings`` says where the YAML config lives and how to serve it; everything about the
ensemble itself is in that YAML. ``read_api_keys`` adds the keys from the env var the config
names (``server.api_keys_env``) to the ones written in the config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ensemble.config import ServerConfig

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
DEFAULT_CONFIG = Path("configs") / "default.yaml"


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BLENDGATE_", frozen=True, extra="ignore")

    config: Path | None = None  # None: configs/default.yaml here, else the one beside the code
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    log_level: LogLevel = "info"


def default_config_path(cwd: Path | None = None) -> Path:
    """``configs/default.yaml`` under ``cwd``, falling back to the one shipped with the repo."""
    local = (cwd or Path.cwd()) / DEFAULT_CONFIG
    if local.is_file():
        return local
    return Path(__file__).resolve().parent.parent / DEFAULT_CONFIG


def read_api_keys(server: ServerConfig, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    keys = set(server.api_keys)
    if server.api_keys_env:
        keys.update(k.strip() for k in env.get(server.api_keys_env, "").split(","))
    keys.discard("")
    return frozenset(keys)
