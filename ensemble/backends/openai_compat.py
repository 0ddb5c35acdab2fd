"""``OpenAICompatBackend``: any OpenAI-compatible chat server (vLLM, llama.cpp, TGI, OpenAI).

One pooled ``httpx.AsyncClient`` per backend (or one shared, passed in). ``complete`` sends ONE
``POST {base_url}/chat/completions`` with ``n``; ``stream`` sends the same with ``stream: true``
and ``stream_options.include_usage`` and reads server-sent events until ``data: [DONE]``.

``base_url`` follows the OpenAI SDK convention (``http://host:8000/v1``); a URL without the
``/v1`` suffix gets it appended.

Every foreign failure is translated in ONE place, ``map_upstream_errors`` (after httpx's
``map_httpcore_exceptions``):

    httpx.TimeoutException            -> BackendTimeout
    httpx.ConnectError                -> BackendConnectError
    other httpx transport errors      -> BackendProtocolError (e.g. a connection dropped mid-body)
    HTTP status >= 400                -> BackendStatusError(status, detail=upstream's message)
    invalid JSON / wrong shape / stream ended before [DONE] -> BackendProtocolError

Cancelling a call (client disconnect) closes the upstream connection: the response is
closed on the way out of its ``async with``, so the upstream server sees the hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

from ensemble.backends.openai_wire import (
    StreamAssembler,
    chat_request_body,
    error_message,
    fit_tools,
    parse_completion,
)
from ensemble.config import OpenAIBackendConfig
from ensemble.errors import (
    BackendConnectError,
    BackendError,
    BackendProtocolError,
    BackendStatusError,
    BackendTimeout,
    ConfigError,
    OverloadedError,
)
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta
from ensemble.vision import refuse_images

_TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[BackendError]], ...] = (
    (httpx.TimeoutException, BackendTimeout),
    (httpx.ConnectError, BackendConnectError),
    (httpx.TransportError, BackendProtocolError),
)


@contextlib.contextmanager
def map_upstream_errors(backend: str) -> Iterator[None]:
    """Translate httpx and JSON failures into the ``BackendError`` tree (see module doc)."""
    try:
        yield
    except BackendError:
        raise
    except json.JSONDecodeError as exc:
        raise BackendProtocolError(f"invalid JSON from upstream: {exc}", backend=backend) from exc
    except httpx.TransportError as exc:
        for source, target in _TRANSPORT_ERRORS:
            if isinstance(exc, source):
                detail = str(exc) or type(exc).__name__
                raise target(f"{type(exc).__name__}: {detail}", backend=backend) from exc
        raise  # unreachable: TransportError is the last row


def api_url(base_url: str, path: str) -> str:
    """``{base_url}/v1/{path}``, whether or not ``base_url`` ends in ``/v1``."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path}"


def chat_completions_url(base_url: str) -> str:
    return api_url(base_url, "chat/completions")


UPSTREAM_KEEPALIVE_EXPIRY_S = 2.0
CONNECT_RETRIES = 1


class OpenAICompatBackend:
    """A remote OpenAI-compatible chat model (see module docstring)."""

    def __init__(
        self, name: str, cfg: OpenAIBackendConfig, client: httpx.AsyncClient | None = None
    ) -> None:
        self.name = name
        self._cfg = cfg
        self._url = chat_completions_url(str(cfg.base_url))
        self._headers = auth_headers(cfg.api_key_env)
        self._owns_client = client is None
        # The bounded queue in front of the pool: at most max_connections calls hold a
        # connection; up to max_queue more wait on the semaphore (no CPU while waiting, unlike
        # httpcore's pool, whose assignment is O(waiters) per request); beyond that the call is
        # shed at once with OverloadedError (503 + Retry-After).
        self._slots = asyncio.Semaphore(cfg.max_connections)
        self._waiting = 0
        self._holding = 0  # calls past the semaphore (``in_flight``)
        limits = httpx.Limits(
            max_connections=cfg.max_connections,
            max_keepalive_connections=cfg.max_connections,
            # Drop idle connections before the upstream does: vLLM and llama.cpp-style
            # uvicorn servers close them after 5 s, and reusing one at that instant fails
            # the POST with a ReadError (seen in benchmarks/bench_gateway.py at c=64).
            keepalive_expiry=UPSTREAM_KEEPALIVE_EXPIRY_S,
        )
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            # One more try at opening a connection (nothing was sent yet, so it is safe): in a
            # burst, a loop busy with 1,000 streams can fire a connect timeout after the
            # connection was in fact made (benchmarks/bench_reliability.py).
            transport=httpx.AsyncHTTPTransport(limits=limits, retries=CONNECT_RETRIES),
        )

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(name={self.name!r}, url={self._url!r})"

    @property
    def in_flight(self) -> int:
        """Calls holding one of the ``max_connections`` slots now (sending, or reading a
        response or stream); a call waiting in the queue does not count."""
        return self._holding

    @property
    def queued(self) -> int:
        """Calls waiting for a free slot now (at most ``max_queue``)."""
        return self._waiting

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> list[Completion]:
        body = self._body(messages, params, n, stream=False)
        try:
            return await asyncio.wait_for(self._complete(body), self._cfg.timeout_s)
        except TimeoutError as exc:
            raise BackendTimeout(
                f"no answer within {self._cfg.timeout_s:g}s", backend=self.name) from exc

    async def _complete(self, body: dict[str, Any]) -> list[Completion]:
        async with self._slot():
            with map_upstream_errors(self.name):
                response = await self._client.post(self._url, json=body, headers=self._headers)
                if response.status_code >= 400:
                    raise status_error(self.name, response.status_code, response.text)
                return parse_completion(response.json(), backend=self.name)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of the ``max_connections`` slots (see ``__init__``)."""
        if self._slots.locked():
            if self._waiting >= self._cfg.max_queue:
                raise OverloadedError(
                    f"backend {self.name}: {self._cfg.max_connections} calls in flight and "
                    f"{self._waiting} waiting (max_queue)", retry_after_s=1)
            self._waiting += 1
            try:
                async with asyncio.timeout(self._cfg.timeout_s):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise BackendTimeout(f"no free connection within {self._cfg.timeout_s:g}s",
                                     backend=self.name) from exc
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            self._slots.release()

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> AsyncIterator[TextDelta]:
        body = self._body(messages, params, n, stream=True)
        assembler = StreamAssembler(backend=self.name, n=n)
        async with self._slot():
            with map_upstream_errors(self.name):
                async with self._client.stream(
                    "POST", self._url, json=body, headers=self._headers
                ) as response:
                    if response.status_code >= 400:
                        text = (await response.aread()).decode("utf-8", "replace")
                        raise status_error(self.name, response.status_code, text)
                    done = False
                    async for data in sse_data(response.aiter_lines()):
                        if data.strip() == "[DONE]":
                            done = True
                            break
                        for delta in assembler.feed(json.loads(data)):
                            yield delta
        if not done and not assembler.complete:
            raise BackendProtocolError("stream ended before [DONE]", backend=self.name)
        for delta in assembler.finish():
            yield delta

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _body(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int, *, stream: bool
    ) -> dict[str, Any]:
        if not self._cfg.vision:
            refuse_images(self.name, messages)
        params = fit_tools(params, self._cfg.max_tools_chars, backend=self.name)
        return chat_request_body(
            messages, params, n, model=self._cfg.model, defaults=self._cfg.params, stream=stream)



def status_error(backend: str, status: int, text: str) -> BackendStatusError:
    """An upstream's HTTP error, with its own message when it sent OpenAI's error shape."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        data = None
    message = error_message(data, text.strip()[:300] or "(empty body)")
    return BackendStatusError(f"upstream HTTP {status}: {message}", backend=backend,
                              status=status, detail=message)


def auth_headers(api_key_env: str | None) -> dict[str, str]:
    if not api_key_env:
        return {}
    key = os.environ.get(api_key_env)
    if not key:
        raise ConfigError(f"environment variable {api_key_env} (the API key) is not set",
                          key="api_key_env")
    return {"Authorization": f"Bearer {key}"}


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined; comments skipped)."""
    buffer: list[str] = []
    async for line in lines:
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            buffer.append(value.removeprefix(" "))
    if buffer:
        yield "\n".join(buffer)
