"""The one model-file resolver (ensemble/checkpoints.py): each lookup step, and offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest

from ensemble.checkpoints import find_local_dir, resolve_dir, resolve_file
from ensemble.errors import ConfigError
from tests.fixtures.hub_cache import place_in_hub_cache

REPO = "org-x/model-y"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import; the resolver reads the constant per call.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    directory = tmp_path / "files"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "t5"}), encoding="utf-8")
    return directory


def test_a_local_directory_is_itself(checkpoint: Path, offline: None) -> None:
    assert resolve_dir(str(checkpoint)) == checkpoint
    assert resolve_file(str(checkpoint), "config.json") == checkpoint / "config.json"


def test_plain_layout_under_cache_dir(checkpoint: Path, tmp_path: Path, offline: None) -> None:
    root = tmp_path / "downloads"
    (root / "org-x").mkdir(parents=True)
    checkpoint.rename(root / REPO)
    assert resolve_dir(REPO, str(root)) == root / REPO


def test_plain_layout_under_the_default_hub_cache(
    checkpoint: Path, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # llm-blender 0.0.2 downloaded to <hub cache>/<repo id> when no cache_dir was given.
    hub = tmp_path / "hub"
    (hub / "org-x").mkdir(parents=True)
    checkpoint.rename(hub / REPO)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    assert find_local_dir(REPO) == hub / REPO


def test_plain_layout_needs_a_config(tmp_path: Path, offline: None) -> None:
    (tmp_path / REPO).mkdir(parents=True)  # an empty leftover directory is not a checkpoint
    assert find_local_dir(REPO, str(tmp_path)) is None


def test_hub_cache_snapshot_offline(checkpoint: Path, tmp_path: Path, offline: None) -> None:
    cache = tmp_path / "hf-cache"
    snapshot = place_in_hub_cache(cache, REPO, checkpoint)
    assert resolve_dir(REPO, str(cache)) == snapshot
    assert resolve_file(REPO, "config.json", str(cache)) == snapshot / "config.json"


def test_offline_and_not_cached_names_the_reason(tmp_path: Path, offline: None) -> None:
    with pytest.raises(ConfigError, match=r"cannot find 'org-x/model-y'.*HF_HUB_OFFLINE is set"):
        resolve_dir(REPO, str(tmp_path))
    with pytest.raises(ConfigError, match=r"'org-x/model-y/tokenizer.json'.*HF_HUB_OFFLINE"):
        resolve_file(REPO, "tokenizer.json", str(tmp_path))


def test_a_cached_repo_without_the_file_is_not_found(
    checkpoint: Path, tmp_path: Path, offline: None
) -> None:
    cache = tmp_path / "hf-cache"
    place_in_hub_cache(cache, REPO, checkpoint)
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set"):
        resolve_file(REPO, "missing.json", str(cache))


def test_a_failed_download_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*_args: object, **kwargs: object) -> str:
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not cached")
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(ConfigError, match="hub download failed.*ConnectionError"):
        resolve_dir(REPO, str(tmp_path), key="fuser.checkpoint")
