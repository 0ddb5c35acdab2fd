"""HTTP client side of a ranker or fuser served by another blendgate (``type: remote``).

One pooled ``httpx.AsyncClient`` per remote service. Connection failures (refused, connect
timeout) are retried at once by httpx's own transport (``retries=connect_retries``): only
those, because a request that reached the server may already have run there.

Failures are turned into the errors an in-process ranker or fuser raises, through
:func:`service_error` and the transport mapping of the OpenAI backend
(:func:`ensemble.backends.openai_compat.map_upstream_errors`):

    HTTP 503 (the remote model's queue is full)    -> OverloadedError (Retry-After kept)
    any other HTTP error, timeout, refused, bad JSON -> the service's error class
                                                      (RankerError / FuserError)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx

from ensemble.backends.openai_compat import auth_headers, map_upstream_errors
from ensemble.backends.openai_wire import error_message
from ensemble.config import RemoteFuserConfig, RemoteRankerConfig
from ensemble.errors import BackendError, BlendError, OverloadedError

ServiceError = type[BlendError]


def service_client(cfg: RemoteRankerConfig | RemoteFuserConfig) -> httpx.AsyncClient:
    """A pooled client for one remote service, with connect retries in its transport."""
    limits = httpx.Limits(max_connections=cfg.max_connections,
                          max_keepalive_connections=cfg.max_connections,
                          keepalive_expiry=2.0)  # under uvicorn's 5 s keep-alive, as upstreams
    transport = httpx.AsyncHTTPTransport(retries=cfg.connect_retries, limits=limits)
    return httpx.AsyncClient(
        base_url=cfg.base,
        transport=transport,
        timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
        headers=auth_headers(cfg.api_key_env),
    )


@contextlib.contextmanager
def mapped_errors(who: str, error: ServiceError) -> Iterator[None]:
    """Transport and JSON failures inside the block -> ``error(f"{who}: ...")``."""
    try:
        with map_upstream_errors(who):
            yield
    except BackendError as exc:
        raise error(f"{who}: {exc}") from exc


def service_error(who: str, error: ServiceError, response: httpx.Response, text: str) -> Exception:
    """The error for an HTTP error answer of a remote service (body already read)."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = None
    message = error_message(data, text.strip()[:300] or "(empty body)")
    if response.status_code == 503:
        retry_after = response.headers.get("retry-after", "")
        return OverloadedError(f"{who}: {message}",
                               retry_after_s=int(retry_after) if retry_after.isdigit() else 1)
    return error(f"{who}: HTTP {response.status_code}: {message}")
