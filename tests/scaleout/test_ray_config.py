"""The ``ray:`` config section -> Ray Serve deployment options, and which components get a
deployment. No Ray cluster is started (binding an application does not need one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.serve")

from ensemble.errors import ConfigError
from gateway.config import parse_config
from gateway.ray_app import app_builder, build_application, model_fusers, model_rankers
from gateway.ray_config import deployment_options

PAIRRM = {"type": "pairrm", "checkpoint": "some/dir", "device": "cpu"}


def _config(**ray: object) -> dict[str, object]:
    members = [{"backend": "m"}]
    return {
        "server": {"api_keys_env": None, "drain_grace_s": 42},
        "backends": {"m": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
        "models": [
            {"type": "ensemble", "id": "a", "members": members, "ranker": PAIRRM,
             "fuser": {"type": "genfuser", "checkpoint": "g", "fallback": {"type": "llm",
                                                                         "backend": "m"}}},
            {"type": "ensemble", "id": "b", "members": members, "ranker": PAIRRM,
             "fuser": {"type": "llm", "backend": "m"}},
            {"type": "ensemble", "id": "c", "members": members, "ranker": {"type": "none"}},
        ],
        "rank_service": {**PAIRRM, "comparison": "bubble"},
        "ray": ray,
    }


def test_autoscaling_and_fractional_gpus_reach_the_deployment_options() -> None:
    config = parse_config(_config(ranker={
        "num_gpus": 0.25, "num_cpus": 2, "max_ongoing_requests": 32,
        "autoscaling": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 8}}))
    options = deployment_options("ranker-0", config.ray.ranker, drain_grace_s=42)
    assert options == {
        "name": "ranker-0", "max_ongoing_requests": 32, "graceful_shutdown_timeout_s": 42,
        "ray_actor_options": {"num_cpus": 2, "num_gpus": 0.25},
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                               "target_ongoing_requests": 8},
    }
    fixed = deployment_options("gateway", config.ray.gateway, drain_grace_s=42)
    assert fixed["num_replicas"] == 1 and "autoscaling_config" not in fixed


def test_one_deployment_per_distinct_model_component() -> None:
    config = parse_config(_config())
    # a and b share one PairRM config; the rank_service's differs; "none" stays in-process
    assert [r.type for r in model_rankers(config)] == ["pairrm", "pairrm"]
    assert [f.type for f in model_fusers(config)] == ["genfuser"]  # llm stays in-process
    build_application(config)  # binds without a cluster


def test_autoscaling_bounds_are_checked() -> None:
    with pytest.raises(ConfigError, match="min_replicas"):
        parse_config(_config(ranker={"autoscaling": {"min_replicas": 3, "max_replicas": 2}}))


def test_serve_run_import_path_builds_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "blend.yaml"
    path.write_text(yaml.safe_dump(_config(gateway={"num_replicas": 3})))
    app = app_builder({"config": str(path)})  # serve run gateway.ray_app:app_builder config=...
    assert type(app).__name__ == "Application"
    with pytest.raises(ConfigError, match="cannot read config file"):
        app_builder({"config": str(tmp_path / "missing.yaml")})
