"""One instance per distinct config, shared by everything that asks for it.

The engine keeps one :class:`SharedByConfig` for rankers and one for fusers, so ensembles (and
``/v1/rank``, ``/v1/fuse``) that configure the same model get one loaded copy: four ensembles
with the same ``gen_fuser_3b`` fuser hold one 6 GB model, not four. Two configs are the same
when their JSON is equal. The cache belongs to whoever builds the models (the engine); it is
not a module global.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel


class Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=BaseModel)
T = TypeVar("T", bound=Closable)


class SharedByConfig(Generic[C, T]):
    """``get(cfg)`` builds on first use and returns the same object afterwards; ``aclose``
    closes each object exactly once."""

    def __init__(self, build: Callable[[C], Awaitable[T]]) -> None:
        self._build = build
        self._items: dict[str, T] = {}
        self._lock = asyncio.Lock()  # two concurrent gets of one config load it once

    async def get(self, cfg: C) -> T:
        key = cfg.model_dump_json()
        async with self._lock:
            if key not in self._items:
                self._items[key] = await self._build(cfg)
            return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    async def aclose(self) -> None:
        items, self._items = list(self._items.values()), {}
        for item in items:
            await item.aclose()
