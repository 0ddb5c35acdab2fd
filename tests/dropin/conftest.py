"""Fixtures of the drop-in tests.

    hf_home         (session) a temporary HF_HOME whose hub cache holds the tiny checkpoints
                    under the seed snippets' hub ids (cached_checkpoints.py); returns
                    {"root": HF_HOME, hub id: source directory of those files}
    run_blocks      run code blocks in a fresh interpreter with HF_HOME set to hf_home,
                    HF_HUB_OFFLINE=1, CUDA hidden and one torch thread (so results equal a
                    CPU reference in this process on any host), and the drop-in's src/ (then
                    the checkout) first on PYTHONPATH, so ``import llm_blender`` needs no
                    install; returns run_blocks.py's report
    drop_in_src     compat/llm-blender/src
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.dropin.cached_checkpoints import build_hf_home

ROOT = Path(__file__).resolve().parents[2]
DROP_IN_SRC = ROOT / "compat" / "llm-blender" / "src"
BLOCK_TIMEOUT_S = 300
RunBlocks = Callable[[Sequence[str], Sequence[Sequence[str]]], dict[str, Any]]
_CACHE_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_HUB_OFFLINE",
                    "TRANSFORMERS_OFFLINE")


@pytest.fixture(scope="session")
def drop_in_src() -> Path:
    return DROP_IN_SRC


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_home")
    return {"root": root, **build_hf_home(root)}


def snippet_env(hf_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARIABLES}
    env.update(HF_HOME=str(hf_root), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(DROP_IN_SRC), str(ROOT)]))
    return env


@pytest.fixture
def run_blocks(hf_home: dict[str, Path], tmp_path: Path) -> RunBlocks:
    def run(blocks: Sequence[str], names: Sequence[Sequence[str]]) -> dict[str, Any]:
        spec, out = tmp_path / "spec.json", tmp_path / "out.json"
        spec.write_text(json.dumps({"blocks": list(blocks), "names": [list(n) for n in names]}))
        done = subprocess.run(
            [sys.executable, "-m", "tests.dropin.run_blocks", str(spec), str(out)],
            env=snippet_env(hf_home["root"]), cwd=tmp_path, capture_output=True, text=True,
            timeout=BLOCK_TIMEOUT_S, check=False)
        assert done.returncode == 0, f"the blocks failed:\n{done.stderr[-6000:]}"
        report: dict[str, Any] = json.loads(out.read_text())
        return report

    return run
