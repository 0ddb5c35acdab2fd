"""PEP 517 build backend: setuptools' own, refusing to build for an environment that already
holds an original LLM-Blender.

pip builds a local project (``pip install ./compat/llm-blender``, ``pip install -e ...``) by
calling these hooks with the interpreter of the environment it installs into, so that
interpreter's site-packages (``sysconfig`` purelib/platlib) is where an original would be; pip's
build isolation hides it from ``sys.path`` but not from ``sysconfig``. The metadata and wheel
hooks (regular and editable) refuse there; ``build_sdist`` never does (an sdist installs
nothing). The check itself is ``src/llm_blender/_guard.py``, loaded by path, the same code the
package runs on import. Limits (README, "A drop-in for llm_blender"): a prebuilt wheel is
installed without calling any hook, and ``--target``/``--prefix``/``--user`` installs or
frontends that build in a separate environment (uv, ``python -m build``) look elsewhere; the
import-time refusal still applies there.
"""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import build_meta as _setuptools

GUARD = Path(__file__).resolve().parents[1] / "src" / "llm_blender" / "_guard.py"

# Hooks that install nothing pass through unchanged.
get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
build_sdist = _setuptools.build_sdist


def _guard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_llm_blender_guard", GUARD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def target_site_dirs() -> list[str]:
    """The site-packages directories of the interpreter running this build."""
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


def refuse_if_original_installed() -> None:
    guard = _guard()
    originals = guard.original_distributions(target_site_dirs())
    if originals:
        raise RuntimeError(guard.conflict_message(originals, "be installed"))


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: dict[str, Any] | None = None) -> str:
    refuse_if_original_installed()
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str,
                                        config_settings: dict[str, Any] | None = None) -> str:
    refuse_if_original_installed()
    return _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    refuse_if_original_installed()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    refuse_if_original_installed()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
