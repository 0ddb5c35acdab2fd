"""The ``ensemble`` facade: ``__all__`` lists exactly the public names, and importing stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import ensemble


def _public_names() -> set[str]:
    """Public non-module attributes, plus the names the package loads lazily on access
    (``dir(ensemble)`` lists them; they are not in its namespace until first used)."""
    namespace = vars(ensemble)
    return {
        name
        for name in dir(ensemble)
        if not name.startswith("_") and not inspect.ismodule(namespace.get(name))
    }


def test_all_is_the_set_of_public_names() -> None:
    # Its order is ruff's (RUF022: constants, classes, functions), checked by `ruff check`.
    assert len(ensemble.__all__) == len(set(ensemble.__all__))
    assert set(ensemble.__all__) == _public_names()


def test_every_exported_name_resolves() -> None:
    code = (
        "import ensemble\n"
        "missing = [n for n in ensemble.__all__ if getattr(ensemble, n, None) is None]\n"
        "assert not missing, missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        ensemble.NoSuchName  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("ensemble.NoSuchName did not raise")


def test_import_ensemble_does_not_import_torch_or_transformers() -> None:
    code = (
        "import sys\n"
        "import ensemble\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "ensemble.Blender\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_compat_package_exports_the_drop_in_names_lazily() -> None:
    code = (
        "import sys\n"
        "import ensemble.compat as compat\n"
        "assert 'torch' not in sys.modules\n"
        "from ensemble.compat.blender import Blender\n"
        "from ensemble.fusers.topk import get_topk_candidates_from_ranks\n"
        "from ensemble.rankers.pairrm.hf_model import DebertaV2PairRM\n"
        "assert compat.Blender is Blender and compat.DebertaV2PairRM is DebertaV2PairRM\n"
        "assert compat.get_topk_candidates_from_ranks is get_topk_candidates_from_ranks\n"
        "assert sorted(compat.DROP_IN) == sorted(set(compat.__all__) - {'DROP_IN'})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
