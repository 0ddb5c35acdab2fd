"""``blendgate serve --engine ray``: the CLI hands the loaded config to the Ray application.

Ray itself is not started here (``tests/scaleout/test_ray.py`` runs the application;
``benchmarks/bench_scale.py`` runs this very command); ``serve_on_ray`` is replaced by a
recorder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("ray.serve")

import gateway.ray_app
from gateway.cli import main


def test_engine_ray_serves_the_config_on_ray(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(gateway.ray_app, "serve_on_ray",
                        lambda config, **kwargs: calls.append({"config": config, **kwargs}))
    path = tmp_path / "ranker.yaml"
    path.write_text(yaml.safe_dump({
        "server": {"api_keys_env": None}, "backends": {},
        "rank_service": {"type": "none"}, "ray": {"gateway": {"num_replicas": 3}}}))
    code = main(["serve", "--engine", "ray", "--config", str(path), "--host", "127.0.0.1",
                 "--port", "18799", "--ray-address", "auto"])
    assert code == 0
    (call,) = calls
    assert call["config"].ray.gateway.num_replicas == 3
    assert (call["host"], call["port"], call["address"]) == ("127.0.0.1", 18799, "auto")
