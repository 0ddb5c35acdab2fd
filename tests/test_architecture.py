"""The architecture's rules, checked on the source: the gateway enters the library through its
facade, and no function grows past one screen.

The import direction itself (``ensemble`` never imports ``gateway`` or the web stack) is the
import-linter contract in pyproject.toml (``lint-imports`` in .ci/run); these tests check what
an import contract cannot say.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ensemble

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ensemble", "gateway", "compat/llm-blender/src", "compat/llm-blender/_build")
MAX_FUNCTION_LINES = 60


def _sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def _library_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of an ``ensemble`` module in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "ensemble" or name.startswith("ensemble."):
                yield node.lineno, name


def test_the_gateway_imports_the_library_through_its_facade() -> None:
    allowed = {"ensemble", *(f"ensemble.{m}" for m in ensemble.PUBLIC_SUBMODULES)}
    deep = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources("gateway")
        for line, module in _library_imports(path)
        if module not in allowed
    ]
    assert not deep, "gateway/ reaches past ensemble's facade:\n" + "\n".join(deep)


def test_every_public_submodule_is_importable_and_documented() -> None:
    doc = ensemble.__doc__ or ""
    for module in ensemble.PUBLIC_SUBMODULES:
        assert (ROOT / "ensemble" / module).with_suffix(".py").exists() or (
            ROOT / "ensemble" / module / "__init__.py"
        ).exists(), module
        assert f"ensemble.{module}" in doc, f"ensemble.{module} is not in the facade's docstring"


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {fn.end_lineno - fn.lineno + 1} lines"
        for path in _sources(*PACKAGES)
        for fn in _functions(ast.parse(path.read_text(), str(path)))
        if fn.end_lineno is not None and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
