"""Ensembles with the same fuser config share one loaded fuser (one GenFuser model per
process), as they share rankers; a different config gets its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ensemble.config import FuserConfig, parse_config
from ensemble.engine import BlendEngine
from ensemble.fusers.factory import build_fuser
from ensemble.fusers.genfuser import GenFuser
from tests.ensemble.scripted import ScriptedBackend


def _config(fusers: list[dict[str, Any]]) -> Any:
    return parse_config({
        "backends": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "a"}},
        "models": [{"id": f"e{i}", "type": "ensemble", "members": [{"backend": "a"}],
                    "ranker": {"type": "none"}, "fuser": fuser}
                   for i, fuser in enumerate(fusers)],
    })


async def test_one_genfuser_per_identical_config(tiny_fuser_dir: Path) -> None:
    genfuser = {"type": "genfuser", "checkpoint": str(tiny_fuser_dir), "device": "cpu"}
    other = {**genfuser, "num_beams": 1}
    built: list[FuserConfig] = []

    async def counting(cfg: FuserConfig, backends: Any) -> Any:
        built.append(cfg)
        return await build_fuser(cfg, backends)

    config = _config([genfuser, genfuser, genfuser, other])
    engine = await BlendEngine.from_config(config, backends={"a": ScriptedBackend("a")},
                                           fuser_builder=counting)
    try:
        fusers = [engine.fuser(f"e{i}") for i in range(4)]
        assert len(built) == 2  # two distinct configs, two loads
        assert isinstance(fusers[0], GenFuser)
        assert fusers[0] is fusers[1] is fusers[2]
        assert fusers[3] is not fusers[0]
        assert engine.service_fuser() is fusers[0]
    finally:
        await engine.aclose()
    await engine.aclose()  # closing twice is harmless: each fuser was closed exactly once
