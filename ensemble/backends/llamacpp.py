"""``LlamaCppBackend``: a GGUF model run in-process by llama.cpp (``xllamacpp``), CPU by default.

The model loads once (``start()``, or lazily on the first call) on a worker thread. Each call
is one OpenAI-shaped request handed to ``xllamacpp.Server.handle_chat_completions`` on a
dedicated thread pool (the call blocks its thread while llama.cpp decodes); llama.cpp's
``parallel`` slots batch concurrent sequences, and requests beyond the free slots wait in its
queue, so nothing runs on top of anything else. Tokens come back through a callback that
feeds an ``asyncio.Queue``: streaming is real, and returning ``True`` from that callback is how
a cancelled or abandoned call stops llama.cpp's decoding.

Tools, JSON modes and logprobs go to llama.cpp as they are (its jinja chat-template handling
parses tool calls, its grammar constrains JSON). Two additions: ``chat_template`` replaces the
GGUF's template (SmolLM2's own drops tools; ``chatml-tools`` ships with blendgate), and a
required or named ``tool_choice``, which llama.cpp does not enforce, is generated as
grammar-constrained JSON and turned into the call (``forced_tools``).

``n`` samples: llama.cpp decodes ``n`` sequences of one request in separate slots, and refuses
``n`` above the slot count, so a larger ``n`` is split into several requests.

Defaults chosen for the offline demo (SmolLM2-135M, 1 thread, 2-core host):

* ``max_tokens`` defaults to ``DEFAULT_MAX_TOKENS`` (128) when neither the request nor the
  config ``params`` set it. Measured on the 2-core dev host, 1 thread, little other load:
  load 0.7-0.9 s; 4 samples x 150 tokens 8.1 s (74 tok/s together, 64 tok/s for one
  sequence); a 630-token prompt prefills in 4-6 s. So with 128, 4 member samples (~7 s) plus
  an LLM fusion of the top 3 (~400-token prompt + 128 tokens, ~5 s) stay within ~15 s.
* ``context_length`` is the KV cache shared by all slots (``kv_unified``): any one slot may
  use all of it, instead of llama.cpp's default ``context_length / parallel`` per slot.
* xllamacpp always opens its HTTP listener too; it is bound to 127.0.0.1 on a random port and
  locked with a random API key, so only in-process calls reach the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.backends.forced_tools import as_tool_calls, constrained, forced_call_schema
from ensemble.backends.model_path import resolve_gguf
from ensemble.backends.openai_wire import (
    StreamAssembler,
    chat_request_body,
    fit_tools,
    merge_logprobs,
    merge_tool_call_deltas,
)
from ensemble.concurrency import LoadOnce, ThreadFeed
from ensemble.config import LocalBackendConfig
from ensemble.errors import BackendError, BackendProtocolError, BackendStatusError, BackendTimeout
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta, Usage

DEFAULT_MAX_TOKENS = 128
_PROMPT_CACHE_MIB = 256


@dataclass(frozen=True)
class _Chunk:
    data: Any


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Ended:
    pass


_Item = _Chunk | _Failed | _Ended


class LlamaCppBackend:
    """In-process llama.cpp chat model (see module docstring)."""

    def __init__(self, name: str, cfg: LocalBackendConfig) -> None:
        if cfg.runtime != "llamacpp":
            raise ValueError(f"LlamaCppBackend needs runtime 'llamacpp', not {cfg.runtime!r}")
        self.name = name
        self._cfg = cfg
        self.model_path: Path = resolve_gguf(cfg.model, cfg.gguf_file, cache_dir=cfg.cache_dir)
        # One thread per in-flight request (each blocks while llama.cpp decodes it), plus one.
        self._executor = ThreadPoolExecutor(
            cfg.parallel + 1, thread_name_prefix=f"blendgate-llamacpp-{name}")
        self._server: LoadOnce[Any] = LoadOnce(self._load, self._executor)
        self._cancels: set[threading.Event] = set()

    def __repr__(self) -> str:
        return f"LlamaCppBackend(name={self.name!r}, model={str(self.model_path)!r})"

    async def start(self) -> None:
        """Load the model now (idempotent); otherwise the first call loads it."""
        await self._server.get()

    def _load(self) -> Any:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_parallel = self._cfg.parallel
        params.kv_unified = True
        params.n_ctx = self._cfg.context_length
        params.n_gpu_layers = 0
        params.cpuparams.n_threads = self._cfg.threads
        params.cpuparams_batch.n_threads = self._cfg.threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [secrets.token_urlsafe(24)]
        params.n_threads_http = 1
        params.cache_ram_mib = _PROMPT_CACHE_MIB
        params.verbosity = 0
        if self._cfg.chat_template is not None:
            params.chat_template = chat_template_text(self._cfg.chat_template)
        try:
            return xllamacpp.Server(params)
        except Exception as exc:
            raise BackendError(f"cannot load {self.model_path}: {exc}", backend=self.name) from exc

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> list[Completion]:
        pieces: dict[int, list[TextDelta]] = {i: [] for i in range(n)}
        ends: dict[int, TextDelta] = {}
        async for delta in self.stream(messages, params, n):
            pieces.setdefault(delta.index, []).append(delta)
            if delta.finish_reason is not None or delta.usage is not None:
                ends[delta.index] = delta
        usage = next((d.usage for d in ends.values() if d.usage is not None), None)
        return [
            _completion(pieces[i], ends[i].finish_reason if i in ends else None,
                        usage if i == 0 else None)
            for i in sorted(pieces)
        ]

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> AsyncIterator[TextDelta]:
        params = fit_tools(params, self._cfg.max_tools_chars, backend=self.name)
        schema = forced_call_schema(params)
        if schema is None:
            deltas = self._stream(messages, params, n)
        else:  # llama.cpp does not enforce a required call: constrain it (see forced_tools)
            deltas = as_tool_calls(self._stream(messages, constrained(params, schema), n))
        async with contextlib.aclosing(deltas) as events:
            async for delta in events:
                yield delta

    async def _stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int
    ) -> AsyncGenerator[TextDelta, None]:
        if n < 1:
            raise BackendStatusError(f"n must be >= 1, got {n}", backend=self.name, status=400)
        await self.start()
        if params.max_tokens is None and "max_tokens" not in self._cfg.params:
            params = SamplingParams(**{**params.__dict__, "max_tokens": DEFAULT_MAX_TOKENS})
        slots = self._cfg.parallel
        bodies = [
            (offset, chat_request_body(messages, params, min(slots, n - offset),
                                       defaults=self._cfg.params, stream=True))
            for offset in range(0, n, slots)
        ]
        assembler = StreamAssembler(backend=self.name, n=n)
        async with contextlib.aclosing(self._run(bodies)) as chunks:
            async for offset, data in chunks:
                for delta in assembler.feed(_shift_indices(data, offset)):
                    yield delta
        if not assembler.complete:
            raise BackendProtocolError("llama.cpp ended a stream without finishing every sample",
                                       backend=self.name)
        for delta in assembler.finish():
            yield delta

    async def _run(
        self, bodies: list[tuple[int, dict[str, Any]]]
    ) -> AsyncGenerator[tuple[int, Any], None]:
        """Run each request on its own thread; yield (sample offset, chunk) as they arrive."""
        loop = asyncio.get_running_loop()
        feed: ThreadFeed[tuple[int, _Item]] = ThreadFeed()
        cancel = threading.Event()
        self._cancels.add(cancel)
        for offset, body in bodies:
            loop.run_in_executor(self._executor, self._handle, body, cancel,
                                 lambda item, o=offset: feed.put((o, item)))
        running = len(bodies)
        try:
            while running:
                try:
                    offset, item = await asyncio.wait_for(feed.get(), self._cfg.timeout_s)
                except TimeoutError as exc:
                    raise BackendTimeout(f"no token within {self._cfg.timeout_s:g}s",
                                         backend=self.name) from exc
                if isinstance(item, _Ended):
                    running -= 1
                elif isinstance(item, _Failed):
                    raise item.error
                else:
                    yield offset, item.data
        finally:
            cancel.set()  # stops llama.cpp at its next token if anything is still decoding
            self._cancels.discard(cancel)

    def _handle(
        self, body: dict[str, Any], cancel: threading.Event, emit: Callable[[_Item], None]
    ) -> None:
        """Worker thread: one blocking llama.cpp request, chunks pushed through ``emit``."""
        def on_chunk(data: Any) -> bool:
            if isinstance(data, dict) and "code" in data and "choices" not in data:
                data = {"error": data}  # xllamacpp's own failure shape
            emit(_Chunk(data))
            return cancel.is_set()

        server = self._server.value
        try:
            if server is None:
                emit(_Failed(BackendError("backend is closed", backend=self.name)))
            elif not cancel.is_set():
                server.handle_chat_completions(body, on_chunk)
        except Exception as exc:  # noqa: BLE001 - xllamacpp raises ValueError for bad input
            emit(_Failed(BackendStatusError(f"llama.cpp rejected the request: {exc}",
                                            backend=self.name, status=400)))
        finally:
            emit(_Ended())

    async def aclose(self) -> None:
        for cancel in list(self._cancels):
            cancel.set()
        holder = [self._server.take()]
        # Dropping the last reference stops llama.cpp's loop thread (its destructor joins it),
        # so drop it on a worker thread, not on the event loop.
        await asyncio.get_running_loop().run_in_executor(self._executor, holder.clear)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _completion(deltas: list[TextDelta], finish: str | None, usage: Usage | None) -> Completion:
    """One sample's streamed deltas put back together as a non-streamed answer."""
    refusal = "".join(d.refusal for d in deltas if d.refusal)
    return Completion(
        text="".join(d.text for d in deltas),
        finish_reason=finish,
        usage=usage,
        tool_calls=merge_tool_call_deltas([c for d in deltas for c in d.tool_calls]),
        logprobs=merge_logprobs([d.logprobs for d in deltas if d.logprobs]),
        refusal=refusal or None,
    )


def chat_template_text(name_or_path: str) -> str:
    """A shipped template by name (``chatml-tools``), or the text of a .jinja file."""
    shipped = Path(__file__).parent / "templates" / f"{name_or_path}.jinja"
    path = shipped if shipped.is_file() else Path(name_or_path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BackendError(f"cannot read chat template {name_or_path!r}: {exc.strerror}"
                           ) from exc


def _shift_indices(data: Any, offset: int) -> Any:
    """Renumber the choices of a split request's chunk to their place among all n samples."""
    if offset and isinstance(data, dict) and isinstance(data.get("choices"), list):
        for choice in data["choices"]:
            if isinstance(choice, dict) and isinstance(choice.get("index"), int):
                choice["index"] += offset
    return data
