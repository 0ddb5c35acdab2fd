"""Tiny GenFuser checkpoints (see ``tiny_t5.py``), built once per session.

    tiny_fuser_dir      a random tiny T5 in gen_fuser_3b's file layout
    endless_fuser_dir   the same, with min_new_tokens=96 in generation_config.json, so a
                        decode of up to 96 tokens never stops at EOS on its own
    tiny_tokenizer      the tokenizer loaded from tiny_fuser_dir (its tokenizer.json verbatim)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ensemble.checkpoints import load_tokenizer_file
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401  (autouse fixture)
from tests.genfuser.tiny_t5 import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_fuser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("gen_fuser_tiny"))


@pytest.fixture(scope="session")
def endless_fuser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("gen_fuser_endless"),
                                 generation={"min_new_tokens": 96})


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_fuser_dir: Path) -> Any:
    return load_tokenizer_file(tiny_fuser_dir)  # as load_fuser does
