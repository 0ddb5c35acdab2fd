"""Build the fuser a ``FuserConfig`` names. Heavy fusers are imported only when configured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ensemble.backends.base import Backend
from ensemble.config import (
    FuserConfig,
    GenFuserConfig,
    LLMFuserConfig,
    RemoteFuserConfig,
    SelectFuserConfig,
)
from ensemble.errors import ConfigError
from ensemble.fusers.base import Fuser
from ensemble.fusers.llm import LLMFuser
from ensemble.fusers.select import SelectFuser

FuserBuilder = Callable[[FuserConfig, Mapping[str, Backend]], Awaitable[Fuser]]


async def build_fuser(cfg: FuserConfig, backends: Mapping[str, Backend]) -> Fuser:
    """Return a ready fuser; models load off the event loop inside ``load``."""
    if isinstance(cfg, SelectFuserConfig):
        return SelectFuser()
    if isinstance(cfg, LLMFuserConfig):
        return _llm(cfg, backends)
    if isinstance(cfg, GenFuserConfig):
        from ensemble.fusers.genfuser import GenFuser  # torch + T5: only when configured

        fallback = _llm(cfg.fallback, backends) if cfg.fallback is not None else None
        fuser: Fuser = await GenFuser.load(cfg, fallback=fallback)
        return fuser
    if isinstance(cfg, RemoteFuserConfig):
        from ensemble.fusers.remote import RemoteFuser

        return RemoteFuser(cfg)
    raise ConfigError(f"unknown fuser type {getattr(cfg, 'type', cfg)!r}", key="fuser.type")


def _llm(cfg: LLMFuserConfig, backends: Mapping[str, Backend]) -> LLMFuser:
    try:
        backend = backends[cfg.backend]
    except KeyError:
        raise ConfigError(f"llm fuser: unknown backend {cfg.backend!r}",
                          key="fuser.backend") from None
    return LLMFuser(backend, cfg)
