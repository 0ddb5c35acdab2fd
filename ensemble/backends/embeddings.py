"""``EmbeddingsBackend``: ``POST {base_url}/v1/embeddings`` of an OpenAI-compatible server.

A backend with ``embeddings: true`` (llama.cpp with ``--embedding``, vLLM serving an embedding
model, OpenAI) serves embeddings under its own name. The request body is passed on as the
client sent it, with ``model`` replaced by the backend's ``model``; the answer comes back as
the upstream sent it, after a check of its shape. Failures map as for chat
(``map_upstream_errors``, ``status_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ensemble.backends.openai_compat import api_url, auth_headers, map_upstream_errors, status_error
from ensemble.config import BlendgateConfig, OpenAIBackendConfig
from ensemble.errors import BackendProtocolError, UnknownModelError


class EmbeddingsBackend:
    def __init__(self, name: str, cfg: OpenAIBackendConfig) -> None:
        self.name = name
        self._model = cfg.model
        self._url = api_url(str(cfg.base_url), "embeddings")
        self._headers = auth_headers(cfg.api_key_env)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=cfg.max_connections))

    async def embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The upstream's embeddings answer (``data``, ``usage``...) for ``body``."""
        with map_upstream_errors(self.name):
            response = await self._client.post(self._url, json={**body, "model": self._model},
                                               headers=self._headers)
            if response.status_code >= 400:
                raise status_error(self.name, response.status_code, response.text)
            data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise BackendProtocolError("not an embeddings answer (no `data` list)",
                                       backend=self.name)
        return data

    async def aclose(self) -> None:
        await self._client.aclose()


class Embedders:
    """Every embeddings backend of a config, by name; ``aclose()`` closes them."""

    def __init__(self, backends: Mapping[str, EmbeddingsBackend]) -> None:
        self._backends = dict(backends)

    @classmethod
    def of(cls, config: BlendgateConfig) -> Embedders:
        return cls({name: EmbeddingsBackend(name, cfg) for name, cfg in config.backends.items()
                    if isinstance(cfg, OpenAIBackendConfig) and cfg.embeddings})

    def names(self) -> list[str]:
        return list(self._backends)

    def get(self, model: str) -> EmbeddingsBackend:
        backend = self._backends.get(model)
        if backend is None:
            raise UnknownModelError(model)
        return backend

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
