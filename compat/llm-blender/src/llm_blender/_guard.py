"""Refuse to coexist with an original LLM-Blender: both provide the import name ``llm_blender``.

Standalone on purpose (standard library only, nothing from this package): the build backend
(``_build/guarded_backend.py``) loads this file by path to refuse the *install*, and
``llm_blender/__init__.py`` calls :func:`refuse_if_original_installed` to refuse the *import*.

An "original" is any installed distribution other than this drop-in that is named
``llm-blender`` / ``llm_blender`` (LLM-Blender's ``setup.py`` name) or that lists
``llm_blender`` in its ``top_level.txt``.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Iterable, Sequence

DROP_IN = "blendgate-llm-blender"
ORIGINAL = "llm-blender"
IMPORT_NAME = "llm_blender"


def _normal(name: str) -> str:
    """PEP 503 normalised distribution name (``llm_blender`` -> ``llm-blender``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _provides_import_name(dist: importlib.metadata.Distribution) -> bool:
    top_level = dist.read_text("top_level.txt") or ""
    return IMPORT_NAME in top_level.split()


def original_distributions(paths: Sequence[str] | None = None) -> list[str]:
    """``"name version at location"`` of every original LLM-Blender found on ``paths``
    (default ``sys.path``), sorted; empty when there is none."""
    dists: Iterable[importlib.metadata.Distribution] = importlib.metadata.distributions(
        path=list(sys.path if paths is None else paths))
    found = set()
    for dist in dists:
        name = dist.metadata["Name"] or ""
        if _normal(name) == DROP_IN:
            continue
        if _normal(name) == ORIGINAL or _provides_import_name(dist):
            found.add(f"{name} {dist.version} at {dist.locate_file('')}")
    return sorted(found)


def conflict_message(originals: Sequence[str], when: str) -> str:
    listed = "; ".join(originals)
    return (
        f"{DROP_IN} refuses to {when}: an original LLM-Blender is installed ({listed}). "
        f"Both provide the import name '{IMPORT_NAME}', and this drop-in will not install over "
        f"it or shadow it. Keep one: 'pip uninstall {ORIGINAL}' to use blendgate's drop-in, or "
        f"'pip uninstall {DROP_IN}' to keep the original."
    )


def refuse_if_original_installed() -> None:
    """ImportError naming what to uninstall when an original LLM-Blender is on ``sys.path``."""
    originals = original_distributions()
    if originals:
        raise ImportError(conflict_message(originals, "be imported"), name=IMPORT_NAME)
