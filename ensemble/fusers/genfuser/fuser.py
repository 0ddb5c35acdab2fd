"""``GenFuser``: LLM-Blender's Flan-T5 fuser behind the gateway's :class:`Fuser` protocol.

Per request:

1. ``(instruction, input)`` come from the chat (:func:`prompt.split_messages`: system and
   developer messages are the instruction, the last user message is the input).
2. The candidates (top-k, best first) are cut and tokenised exactly as the original
   (:func:`prompt.encode_input`). If one of them is longer than ``candidate_max_length``
   tokens, GenFuser would only see a cut of it: with a fallback fuser configured the request
   goes to the fallback, and the returned ``FuseStream.fuser`` names it.
3. Otherwise the job joins the model's :class:`BatchWorker`: requests that arrive within
   ``batch_wait_ms`` of each other (up to ``max_batch_size``) share one ``generate`` call per
   decoding setting, for every decoding mode. Greedy and sampled text is streamed token by
   token; beam-search text is sent once complete. Leaving the stream (or cancelling the task
   reading it) stops that row at the next decoding step.

Tokenisation has its own ``BatchWorker`` and thread: requests that arrive together are
encoded together and so reach the model's worker together, instead of one by one as each
finishes tokenising (which split a burst into a first batch of one and a second of the rest).
Generation runs on the model's own single thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from ensemble.compute import BatchWorker, request_torch_threads
from ensemble.concurrency import ThreadFeed
from ensemble.config import GenFuserConfig
from ensemble.errors import FuserError
from ensemble.fusers.base import Fuser
from ensemble.fusers.genfuser.generate import (
    Decoding,
    FuseJob,
    FuseOutcome,
    RowSink,
    decoding_for,
    generate_ids,
    run_batch,
)
from ensemble.fusers.genfuser.model import LoadedFuser, load_fuser
from ensemble.fusers.genfuser.prompt import FusePrompt, encode_input, split_messages
from ensemble.types import ChatMessage, FuseStream, SamplingParams, TextDelta

_Texts = tuple[str, str, tuple[str, ...]]  # (instruction, input, candidates)


class GenFuser:
    """Fuses with a GenFuser checkpoint; see the module docstring for the request path."""

    name = "genfuser"

    def __init__(
        self,
        loaded: LoadedFuser,
        cfg: GenFuserConfig,
        *,
        fallback: Fuser | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._loaded = loaded
        self._cfg = cfg
        self._fallback = fallback
        self._tokenizer_lock = threading.Lock()
        self._encoder: BatchWorker[_Texts, FusePrompt] = BatchWorker(
            self._encode_batch,
            name="genfuser-tokenize",
            max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.batch_wait_ms,
        )
        self._worker: BatchWorker[FuseJob, FuseOutcome] = BatchWorker(
            self._process,
            name="genfuser",
            max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.batch_wait_ms,
            executor=executor,
        )
        self._executor = executor

    @classmethod
    async def load(cls, cfg: GenFuserConfig, fallback: Fuser | None = None) -> GenFuser:
        """Load the checkpoint on the model's own thread, then run one warm-up step there."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="blendgate-genfuser")
        loop = asyncio.get_running_loop()

        def load() -> LoadedFuser:
            loaded = load_fuser(cfg.checkpoint, cache_dir=cfg.cache_dir, device=cfg.device,
                                dtype=cfg.dtype)
            if loaded.device.type == "cpu":
                request_torch_threads(cfg.threads, "genfuser")  # see GenFuserConfig.threads
            return loaded

        try:
            loaded = await loop.run_in_executor(executor, load)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        fuser = cls(loaded, cfg, fallback=fallback, executor=executor)
        await loop.run_in_executor(executor, fuser._warm_up)
        return fuser

    @property
    def loaded(self) -> LoadedFuser:
        return self._loaded

    async def fuse(
        self,
        messages: Sequence[ChatMessage],
        candidates: Sequence[str],
        params: SamplingParams,
    ) -> FuseStream:
        if not candidates:
            raise FuserError("genfuser: no candidates to fuse")
        instruction, input_text = split_messages(messages)
        prompt = await self._encoder.submit((instruction, input_text, tuple(candidates)))
        if prompt.cut_candidates and self._fallback is not None:
            return await self._fallback.fuse(messages, candidates, params)
        decoding = decoding_for(self._cfg, params)
        return FuseStream(fuser=self.name, deltas=self._deltas(prompt, decoding))

    async def aclose(self) -> None:
        """Stop the batch consumer, wait for the generation in progress, free the thread."""
        await self._encoder.aclose()
        await self._worker.aclose()
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, lambda: None)
            self._executor.shutdown(wait=False)
        if self._fallback is not None:
            await self._fallback.aclose()

    def _encode(self, instruction: str, input_text: str, candidates: list[str]) -> FusePrompt:
        with self._tokenizer_lock:
            return encode_input(
                self._loaded.tokenizer, instruction, input_text, candidates,
                candidate_max_length=self._cfg.candidate_max_length,
                max_length=self._cfg.max_length,
            )

    def _encode_batch(self, items: Sequence[_Texts]) -> list[FusePrompt]:
        try:
            return [self._encode(instruction, text, list(cands))
                    for instruction, text, cands in items]
        except Exception as exc:  # a tokenizer failure reaches every waiter as FuserError
            raise FuserError(f"genfuser tokenisation failed: {type(exc).__name__}: {exc}"
                             ) from exc

    def _warm_up(self) -> None:
        """One decoding step; min lengths from the checkpoint's generation config are lifted."""
        prompt = self._encode("", "", ["warm-up"])
        generate_ids(self._loaded, [prompt.input_ids], self._cfg.max_length, max_new_tokens=1,
                     min_new_tokens=0, min_length=0, num_beams=1, do_sample=False)

    def _process(self, jobs: Sequence[FuseJob]) -> list[FuseOutcome]:
        try:
            return run_batch(self._loaded, jobs, self._cfg.max_length)
        except Exception as exc:  # any model failure reaches every waiter as FuserError
            raise FuserError(f"genfuser generation failed: {type(exc).__name__}: {exc}") from exc

    async def _deltas(self, prompt: FusePrompt, decoding: Decoding) -> AsyncIterator[TextDelta]:
        feed: ThreadFeed[TextDelta] = ThreadFeed()  # device thread -> event loop
        job = FuseJob(prompt=prompt, decoding=decoding,
                      sink=RowSink(self._loaded.tokenizer, feed.put))
        task = asyncio.ensure_future(self._worker.submit(job))
        try:
            while True:
                getter = asyncio.ensure_future(feed.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    task.result()  # the batch failed before this row closed: raise its error
                    if feed.empty():
                        raise FuserError("genfuser: generation ended without a final delta")
                    continue
                delta = getter.result()
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            job.cancelled.set()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
