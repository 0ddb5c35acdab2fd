"""``GatewayConfig``: the library config plus ``server:`` and ``ray:``."""

from __future__ import annotations

from ensemble.config import parse_config as parse_library_config
from gateway.config import GatewayConfig, as_gateway_config, parse_config

BACKEND = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"}


def test_default_max_tokens_reaches_the_built_backends_not_the_written_ones() -> None:
    config = parse_config({"server": {"default_max_tokens": 64},
                           "backends": {"a": BACKEND, "b": {**BACKEND, "params": {"max_tokens": 9}}}})
    built = config.backend_configs()
    assert (built["a"].params, built["b"].params) == ({"max_tokens": 64}, {"max_tokens": 9})
    assert config.backends["a"].params == {}  # as written: dumps and fingerprints unchanged


def test_library_config_is_served_with_default_server_and_ray_sections() -> None:
    library = parse_library_config({"backends": {"a": BACKEND}})
    served = as_gateway_config(library)
    assert isinstance(served, GatewayConfig)
    assert served.server == GatewayConfig(backends={}).server
    assert served.backends == library.backends
    assert as_gateway_config(served) is served
