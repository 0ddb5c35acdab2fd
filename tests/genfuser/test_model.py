"""Checkpoint lookup: local dir, the original ``<cache_dir>/<name>`` layout, the HF cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from ensemble.errors import ConfigError
from ensemble.fusers.genfuser.model import load_fuser
from ensemble.placement import resolve_device, resolve_dtype


def _hub_cache(tmp_path: Path, source: Path, repo_id: str) -> Path:
    """Lay ``source`` out as the HF hub cache does (blobs elided: files copied in place)."""
    cache = tmp_path / "hf-cache"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(source, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return cache


def test_local_directory(tiny_fuser_dir: Path) -> None:
    loaded = load_fuser(str(tiny_fuser_dir), device="cpu")
    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == torch.float32  # "auto" on CPU
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert not loaded.model.training
    assert loaded.pad_token_id == 0 and loaded.eos_token_id == 1
    assert loaded.tokenizer.convert_tokens_to_ids("<extra_id_99>") == len(loaded.tokenizer) - 100


def test_hub_cache_layout_offline(tiny_fuser_dir: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = _hub_cache(tmp_path, tiny_fuser_dir, "llm-blender/gen_fuser_3b")
    loaded = load_fuser("llm-blender/gen_fuser_3b", cache_dir=str(cache), device="cpu",
                        dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.model.config.feed_forward_proj == "gated-gelu"


def test_original_cache_dir_layout(tiny_fuser_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_fuser_dir, tmp_path / "llm-blender" / "gen_fuser_3b")
    loaded = load_fuser("llm-blender/gen_fuser_3b", cache_dir=str(tmp_path), device="cpu")
    assert loaded.model.config.d_model == 32


def test_missing_checkpoint_is_a_config_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import; offline, the download step fails fast
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="cannot load GenFuser checkpoint"):
        load_fuser("nobody/no-such-fuser", cache_dir=str(tmp_path), device="cpu")


def test_device_and_dtype_resolution() -> None:
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError):
        resolve_dtype("int3", torch.device("cpu"))
