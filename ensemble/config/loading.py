"""YAML file or parsed data -> a validated config, every problem a one-line ``ConfigError``.

``load_config(path)`` and ``parse_config(data)`` give the library's :class:`BlendgateConfig`.
``schema=`` is the hook for an application's config that extends it: the gateway passes its
``GatewayConfig`` (``server:`` and ``ray:``). Without that hook a file with those sections
fails with a message that says where they belong, rather than "unknown key".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml
from pydantic import ValidationError

from ensemble.config.blendgate import BlendgateConfig
from ensemble.config.errors import readable_errors
from ensemble.errors import ConfigError

ConfigT = TypeVar("ConfigT", bound=BlendgateConfig)
# Top-level sections of the gateway's config (gateway/config.py), not of the library's.
GATEWAY_SECTIONS = ("server", "ray")


@overload
def parse_config(data: Any, *, source: str | Path = ...) -> BlendgateConfig: ...


@overload
def parse_config(data: Any, *, source: str | Path = ..., schema: type[ConfigT]) -> ConfigT: ...


def parse_config(data: Any, *, source: str | Path = "<config>",
                 schema: type[BlendgateConfig] = BlendgateConfig) -> BlendgateConfig:
    """``data`` (a parsed YAML mapping) validated as ``schema``."""
    _refuse_gateway_sections(data, schema, source)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        (key, message), *rest = readable_errors(exc, schema)
        extra = f" (and {len(rest)} more: {'; '.join(f'{k}: {m}' for k, m in rest)})" if rest else ""
        raise ConfigError(message + extra, path=source, key=key or None) from None


@overload
def load_config(path: str | Path) -> BlendgateConfig: ...


@overload
def load_config(path: str | Path, *, schema: type[ConfigT]) -> ConfigT: ...


def load_config(path: str | Path, *,
                schema: type[BlendgateConfig] = BlendgateConfig) -> BlendgateConfig:
    """The YAML file at ``path`` validated as ``schema``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path) from exc
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", path=path)
    return parse_config(data, source=path, schema=schema)


def _refuse_gateway_sections(data: Any, schema: type[BlendgateConfig],
                             source: str | Path) -> None:
    if not isinstance(data, Mapping):
        return
    for section in GATEWAY_SECTIONS:
        if section in data and section not in schema.model_fields:
            raise ConfigError(
                f"{section!r} configures the blendgate gateway, not the library: load this "
                "file with gateway.config.load_config (or pass schema=GatewayConfig)",
                path=source, key=section)
