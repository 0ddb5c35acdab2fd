"""Build the backend a ``BackendConfig`` names.

Runtimes are imported only when configured, so ``import ensemble`` never imports torch or
xllamacpp: ``llamacpp`` pulls in xllamacpp, ``transformers`` torch and transformers.

Building is cheap and synchronous: a config problem (unknown package, missing file, missing
API key env var) raises ``ConfigError`` here, at start-up; local models load on their first
call, or earlier through their ``start()`` coroutine.
"""

from __future__ import annotations

from ensemble.backends.base import Backend
from ensemble.config import BackendConfig, BlendgateConfig, LocalBackendConfig, OpenAIBackendConfig
from ensemble.errors import ConfigError


def build_backend(name: str, cfg: BackendConfig) -> Backend:
    backend: Backend
    if isinstance(cfg, OpenAIBackendConfig):
        from ensemble.backends.openai_compat import OpenAICompatBackend

        backend = OpenAICompatBackend(name, cfg)
    elif isinstance(cfg, LocalBackendConfig) and cfg.runtime == "llamacpp":
        from ensemble.backends.llamacpp import LlamaCppBackend

        backend = LlamaCppBackend(name, cfg)
    elif isinstance(cfg, LocalBackendConfig) and cfg.runtime == "transformers":
        from ensemble.backends.transformers_local import TransformersBackend

        backend = TransformersBackend(name, cfg)
    else:
        raise ConfigError(f"unknown backend kind {getattr(cfg, 'kind', cfg)!r}",
                          key=f"backends.{name}")
    return backend


def with_default_max_tokens(cfg: BackendConfig, default: int | None) -> BackendConfig:
    """``cfg`` whose ``params`` carry ``max_tokens=default`` unless they set a token limit.

    Backend ``params`` are the lowest layer of a call's sampling params (request, then member
    or fuser params, override them), so a default put here applies only when nobody set one.
    """
    if default is None or {"max_tokens", "max_completion_tokens"} & cfg.params.keys():
        return cfg
    return cfg.model_copy(update={"params": {"max_tokens": default, **cfg.params}})


def build_backends(cfg: BlendgateConfig) -> dict[str, Backend]:
    """One backend per entry of ``cfg.backend_configs()`` (the backends as written, plus the
    defaults an application's config adds: the gateway's ``server.default_max_tokens``);
    names the failing entry in ``ConfigError``."""
    built: dict[str, Backend] = {}
    for name, backend_cfg in cfg.backend_configs().items():
        try:
            built[name] = build_backend(name, backend_cfg)
        except ConfigError as exc:
            raise ConfigError(f"backend {name!r}: {exc}", key=f"backends.{name}") from exc
    return built
