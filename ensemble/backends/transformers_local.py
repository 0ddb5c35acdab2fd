"""``TransformersBackend``: a Hugging Face causal LM in-process (the GPU path; CPU works too).

``model`` is a hub id, an HF cache or local directory, or ``package:NAME``; ``gguf_file``
picks a GGUF inside it (transformers dequantizes it with the ``gguf`` package; a package with
exactly one .gguf needs no ``gguf_file``). ``device``/``dtype`` ``auto`` mean cuda + bfloat16
when CUDA is available, else cpu + float32.

All model work runs on ONE dedicated thread (a single-thread executor): loading, and every
``generate`` call, one after the other, never two on top of each other. ``n`` samples are one
``generate`` call with ``num_return_sequences=n``. Tokens stream back through a transformers
``BaseStreamer`` (``TextIteratorStreamer`` only handles one sequence; this one decodes every
row) into an ``asyncio.Queue``; a cancelled or abandoned call stops ``generate`` at its next
step through a stopping criterion.

``max_tokens`` defaults to ``DEFAULT_MAX_TOKENS`` (128) when unset. Sampling: ``temperature``
0 means greedy; ``top_p``, ``seed``, ``stop`` and the ``extra`` keys that are
``GenerationConfig`` fields (``top_k``, ``min_p``, ``repetition_penalty``...) are honoured;
other non-zero OpenAI knobs (presence/frequency penalty, logit_bias) are refused (HTTP 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ensemble.backends.model_path import model_source
from ensemble.compute import request_torch_threads
from ensemble.concurrency import LoadOnce, ThreadFeed
from ensemble.config import LocalBackendConfig
from ensemble.errors import BackendError, BackendStatusError, BackendTimeout
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta, Usage

DEFAULT_MAX_TOKENS = 128


@dataclass(frozen=True)
class _Loaded:
    model: Any
    tokenizer: Any
    device: Any
    eos_ids: frozenset[int]


@dataclass(frozen=True)
class _Tokens:
    """New token ids, one per sample, from one decoding step."""

    ids: list[int]


@dataclass(frozen=True)
class _Done:
    prompt_tokens: int
    error: BaseException | None = None


class TransformersBackend:
    """In-process HF causal LM (see module docstring)."""

    def __init__(self, name: str, cfg: LocalBackendConfig) -> None:
        if cfg.runtime != "transformers":
            raise ValueError(f"TransformersBackend needs runtime 'transformers', not {cfg.runtime!r}")
        self.name = name
        self._cfg = cfg
        self._source, self._gguf_file = model_source(cfg.model, cfg.gguf_file)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"blendgate-hf-{name}")
        self._model = LoadOnce(self._load, self._executor)

    def __repr__(self) -> str:
        return f"TransformersBackend(name={self.name!r}, model={self._source!r})"

    async def start(self) -> None:
        """Load the model now (idempotent); otherwise the first call loads it."""
        await self._model.get()

    def _load(self) -> _Loaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ensemble.placement import resolve_device, resolve_dtype  # imports torch: lazily

        request_torch_threads(self._cfg.threads, f"backend {self.name}")
        # Any: transformers' typing of PreTrainedModel.to rejects a torch.device.
        device: Any = resolve_device(self._cfg.device)
        dtype = resolve_dtype(self._cfg.dtype, device)
        kwargs: dict[str, Any] = {"cache_dir": self._cfg.cache_dir}
        if self._gguf_file is not None:
            kwargs["gguf_file"] = self._gguf_file
        try:
            tokenizer = AutoTokenizer.from_pretrained(self._source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(self._source, dtype=dtype, **kwargs)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load {self._source!r}: {exc}", backend=self.name) from exc
        if tokenizer.chat_template is None:
            raise BackendError(f"{self._source!r} has no chat template", backend=self.name)
        model.to(device).eval()
        eos = model.generation_config.eos_token_id
        eos_ids = frozenset(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return _Loaded(model, tokenizer, device, eos_ids | {tokenizer.eos_token_id})

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> list[Completion]:
        texts: dict[int, list[str]] = {i: [] for i in range(n)}
        finish: dict[int, str | None] = {}
        usage: Usage | None = None
        async for delta in self.stream(messages, params, n):
            texts[delta.index].append(delta.text)
            if delta.finish_reason is not None:
                finish[delta.index] = delta.finish_reason
            usage = delta.usage or usage
        return [Completion("".join(texts[i]), finish.get(i), usage if i == 0 else None)
                for i in range(n)]

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> AsyncIterator[TextDelta]:
        if n < 1:
            raise BackendStatusError(f"n must be >= 1, got {n}", backend=self.name, status=400)
        gen_kwargs = self._generate_kwargs(params.merged(self._cfg.params), n)
        loaded = await self._model.get()
        decoders = [_IncrementalDecoder(loaded.tokenizer, loaded.eos_ids) for _ in range(n)]
        async with contextlib.aclosing(self._run(loaded, messages, gen_kwargs, params.seed)) as items:
            async for item in items:
                if isinstance(item, _Tokens):
                    for index, token in enumerate(item.ids):
                        text = decoders[index].add(token)
                        if text:
                            yield TextDelta(text=text, index=index)
                    continue
                max_new = gen_kwargs["max_new_tokens"]
                completion = sum(d.count for d in decoders)
                for index, decoder in enumerate(decoders):
                    tail = decoder.flush()
                    reason = "stop" if decoder.stopped or decoder.count < max_new else "length"
                    last = index == n - 1
                    yield TextDelta(text=tail, index=index, finish_reason=reason,
                                    usage=Usage(item.prompt_tokens, completion) if last else None)

    async def _run(
        self, loaded: _Loaded, messages: Sequence[ChatMessage], gen_kwargs: dict[str, Any],
        seed: int | None,
    ) -> AsyncGenerator[_Tokens | _Done, None]:
        """Run ``generate`` on the model thread; yield each step's tokens, then ``_Done``."""
        loop = asyncio.get_running_loop()
        feed: ThreadFeed[_Tokens | _Done] = ThreadFeed()
        cancel = threading.Event()
        loop.run_in_executor(self._executor, self._generate, loaded,
                             [{"role": m.role, "content": m.content} for m in messages],
                             gen_kwargs, seed, cancel, feed.put)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(feed.get(), self._cfg.timeout_s)
                except TimeoutError as exc:
                    raise BackendTimeout(f"no token within {self._cfg.timeout_s:g}s",
                                         backend=self.name) from exc
                if isinstance(item, _Done) and item.error is not None:
                    raise item.error
                yield item
                if isinstance(item, _Done):
                    return
        finally:
            cancel.set()

    def _generate(
        self, loaded: _Loaded, messages: list[dict[str, str]], gen_kwargs: dict[str, Any],
        seed: int | None, cancel: threading.Event, emit: Callable[[_Tokens | _Done], None],
    ) -> None:
        """Model thread: tokenize with the chat template and run one ``generate``."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        class _Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate's first put is the prompt
                    self.prompt_seen = True
                    return
                emit(_Tokens([int(t) for t in value.reshape(-1).tolist()]))

            def end(self) -> None:
                pass

        if cancel.is_set():
            emit(_Done(0))
            return
        prompt_tokens = 0
        try:
            inputs = loaded.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
            prompt_tokens = int(inputs["input_ids"].shape[1])
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                loaded.model.generate(
                    **inputs, **gen_kwargs, streamer=_Streamer(),
                    stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                    tokenizer=loaded.tokenizer, pad_token_id=loaded.tokenizer.pad_token_id)
        except (ValueError, TypeError) as exc:
            emit(_Done(prompt_tokens, BackendStatusError(
                f"generate rejected the request: {exc}", backend=self.name, status=400)))
            return
        except Exception as exc:  # noqa: BLE001 - a model failure degrades this member only
            emit(_Done(prompt_tokens, BackendError(f"generate failed: {exc}", backend=self.name)))
            return
        emit(_Done(prompt_tokens))

    def _generate_kwargs(self, params: SamplingParams, n: int) -> dict[str, Any]:
        from transformers import GenerationConfig

        for knob in ("presence_penalty", "frequency_penalty"):
            if getattr(params, knob):
                raise BackendStatusError(f"{knob} is not supported by the transformers backend",
                                         backend=self.name, status=400)
        if params.logit_bias:
            raise BackendStatusError("logit_bias is not supported by the transformers backend",
                                     backend=self.name, status=400)
        # Tools, JSON modes and logprobs need a chat-template parser, a grammar and per-token
        # scores this runtime does not implement: refuse them rather than ignore them.
        for knob in ("tools", "response_format", "logprobs"):
            value = getattr(params, knob)
            if value and not (knob == "response_format" and value.get("type") == "text"):
                raise BackendStatusError(
                    f"{knob} is not supported by the transformers backend; serve this model "
                    f"with vLLM or llama.cpp for it", backend=self.name, status=400)
        greedy = params.temperature is not None and params.temperature == 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
            "num_return_sequences": n,
            "do_sample": not greedy,
        }
        if not greedy:
            if params.temperature is not None:
                kwargs["temperature"] = params.temperature
            if params.top_p is not None:
                kwargs["top_p"] = params.top_p
        if params.stop:
            kwargs["stop_strings"] = list(params.stop)
        known = GenerationConfig()
        for key, value in params.extra.items():
            if key in ("num_return_sequences", "streamer") or not hasattr(known, key):
                raise BackendStatusError(f"unsupported generation parameter {key!r}",
                                         backend=self.name, status=400)
            kwargs[key] = value
        return kwargs

    async def aclose(self) -> None:
        self._model.take()
        self._executor.shutdown(wait=False, cancel_futures=True)


class _IncrementalDecoder:
    """Token ids of one sample -> new text, holding back incomplete UTF-8 and stopping at EOS."""

    def __init__(self, tokenizer: Any, eos_ids: frozenset[int]) -> None:
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self._ids: list[int] = []
        self._emitted = 0
        self.count = 0  # generated tokens, EOS included
        self.stopped = False

    def add(self, token: int) -> str:
        if self.stopped:
            return ""  # padding after this row finished
        self.count += 1
        if token in self._eos_ids:
            self.stopped = True
            return ""
        self._ids.append(token)
        text = self._decode()
        if text.endswith("\ufffd"):
            return ""
        new, self._emitted = text[self._emitted:], len(text)
        return new

    def flush(self) -> str:
        text = self._decode()
        new, self._emitted = text[self._emitted:], len(text)
        return new

    def _decode(self) -> str:
        return str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
