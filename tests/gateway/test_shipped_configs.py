"""Every config shipped in configs/ (and the packaged default) passes the schema check, and
names only backends it defines: a typo in an example config fails here, not in a user's hands."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs").glob("*.yaml")) + [REPO / "gateway" / "configs" / "default.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_passes_the_schema_check(path: Path) -> None:
    assert main(["check-config", str(path), "--schema-only"]) == 0
