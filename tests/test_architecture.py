"""The architecture's rules, checked on the source: the gateway enters the library through its
facade, no function grows past one screen, tests use the library's public names only (no
private attribute, no private import), and benchmarks import no test code.

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


# The one hit in llama_server.py (os's _exit) is the documented stdlib call, not a private name.
PRIVATE_ACCESS_ALLOWED = frozenset({"tests/fixtures/llama_server.py"})


def _private_attributes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, expression) for each attribute read or written with a leading underscore on
    anything but ``self`` or ``cls`` (dunders such as ``__class__`` are public protocol)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        yield node.lineno, ast.unparse(node)


def _migrated_tests() -> Iterator[Path]:
    for path in sorted((ROOT / "tests").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in PRIVATE_ACCESS_ALLOWED:
            continue
        yield path


def test_tests_reach_no_private_attribute() -> None:
    private = [
        f"{path.relative_to(ROOT)}:{line}: {expression}"
        for path in _migrated_tests()
        for line, expression in _private_attributes(ast.parse(path.read_text(), str(path)))
    ]
    assert not private, (
        "tests reach private names (observe behaviour, or add a public API):\n"
        + "\n".join(private))




def test_tests_import_no_private_library_name() -> None:
    private = [
        f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}"
        for path in _migrated_tests()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        and node.module.split(".")[0] in PACKAGES
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not private, "tests import private library names:\n" + "\n".join(private)


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_benchmarks_import_no_test_code() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "benchmarks").rglob("*.py"))
        for line, module in _imported_modules(ast.parse(path.read_text(), str(path)))
        if module == "tests" or module.startswith("tests.")
    ]
    assert not found, "benchmarks import test code:\n" + "\n".join(found)
