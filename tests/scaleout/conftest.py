"""Fixtures for the scale-out tests (remote ranker/fuser, Ray Serve).

The tiny PairRM checkpoints are the ones built by ``tests/pairrm/conftest.py`` (re-exported
here, so this directory builds its own session copy). ``serving_gateway`` runs a real
blendgate (``create_app`` + uvicorn on a free port) for a config, models loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.config import parse_config
from tests.gateway.conftest import running_server
from tests.pairrm.conftest import tiny_checkpoints, tiny_pairrm_hf_dir

__all__ = ["pairrm_cfg", "serving_gateway", "tiny_checkpoints", "tiny_pairrm_hf_dir"]


def pairrm_cfg(checkpoint: Path, **extra: Any) -> dict[str, Any]:
    return {"type": "pairrm", "checkpoint": str(checkpoint), "device": "cpu", **extra}


@contextmanager
def serving_gateway(config: dict[str, Any]) -> Iterator[str]:
    """A blendgate serving ``config`` (a dict) on loopback; yields its base URL."""
    config = {"backends": {}, **config,
              "server": {"api_keys_env": None, **config.get("server", {})}}
    with running_server(create_app(parse_config(config)), startup_timeout_s=60) as url:
        yield url
