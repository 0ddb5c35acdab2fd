"""The library's loader: ``server:`` and ``ray:`` belong to the gateway's config; ``schema=``
is the hook that reads them (gateway/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble.config import BlendgateConfig, load_config, parse_config
from ensemble.errors import ConfigError
from gateway.config import GatewayConfig

BACKENDS = {"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"}}


@pytest.mark.parametrize("section", ["server", "ray"])
def test_gateway_sections_are_refused_with_where_they_belong(section: str) -> None:
    with pytest.raises(ConfigError, match="configures the blendgate gateway") as caught:
        parse_config({"backends": BACKENDS, section: {}}, source="x.yaml")
    assert caught.value.key == section
    assert "gateway.config.load_config" in caught.value.message


def test_schema_hook_reads_the_gateway_sections(tmp_path: Path) -> None:
    path = tmp_path / "blend.yaml"
    path.write_text("backends: {}\nserver: {max_n: 3}\nray: {app_name: x}\n")
    config = load_config(path, schema=GatewayConfig)
    assert isinstance(config, GatewayConfig)
    assert (config.server.max_n, config.ray.app_name) == (3, "x")


def test_library_config_loads_without_gateway_sections(tmp_path: Path) -> None:
    path = tmp_path / "blend.yaml"
    path.write_text("backends: {}\nrank_service: {type: none}\n")
    config = load_config(path)
    assert type(config) is BlendgateConfig
    assert not hasattr(config, "server")


def test_other_unknown_keys_still_name_the_closest_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'backends'"):
        parse_config({"backend": BACKENDS})
