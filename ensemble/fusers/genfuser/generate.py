"""Batched generation on the model's thread, with per-row streaming and per-row stop.

Runs inside the fuser's single device thread (``BatchWorker``'s executor). One call of
:func:`run_batch` serves every job the worker gathered; jobs are grouped by decoding settings
and each group is one ``model.generate`` call.

- Greedy and sampling (``num_beams == 1``): each new token is handed to the job's
  :class:`RowSink` as it is produced, and a job whose consumer went away (its ``cancelled``
  event is set) is marked finished at the next step; when every row is finished or cancelled,
  ``generate`` returns.
- Beam search: the text only exists once the beams are ranked, so it is sent complete; the
  group stops early only when every job in it was cancelled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ensemble.config import GenFuserConfig
from ensemble.fusers.genfuser.model import LoadedFuser
from ensemble.fusers.genfuser.prompt import FusePrompt, truncate_and_pad
from ensemble.types import SamplingParams, TextDelta, Usage


@dataclass(frozen=True)
class Decoding:
    """How to decode; jobs with equal settings share one ``generate`` call."""

    num_beams: int = 4
    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    @property
    def streams(self) -> bool:
        """Token-by-token output is possible only without beam search."""
        return self.num_beams == 1

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "num_return_sequences": 1,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


def decoding_for(cfg: GenFuserConfig, params: SamplingParams) -> Decoding:
    """Config sets the mode; the request may lower ``max_tokens`` and, when sampling, set
    ``temperature``/``top_p``. ``temperature == 0`` turns sampling into greedy decoding.

    Not applied: ``stop``, ``seed``, penalties and ``logit_bias`` (they are member settings;
    a seed would have to reseed the shared device thread's RNG for the whole batch)."""
    max_new = cfg.max_new_tokens
    if params.max_tokens is not None:
        max_new = max(1, min(max_new, params.max_tokens))
    temperature = 1.0 if params.temperature is None else params.temperature
    top_p = 1.0 if params.top_p is None else params.top_p
    if cfg.do_sample and temperature > 0:
        return Decoding(num_beams=cfg.num_beams, max_new_tokens=max_new, do_sample=True,
                        temperature=temperature, top_p=top_p)
    num_beams = 1 if cfg.do_sample else cfg.num_beams
    return Decoding(num_beams=num_beams, max_new_tokens=max_new)


@dataclass(frozen=True)
class FuseOutcome:
    text: str
    finish_reason: str  # "stop" (EOS) or "length"
    usage: Usage  # prompt = encoder input length, completion = generated ids incl. EOS


class RowSink:
    """Receives one row's tokens on the device thread and emits text deltas through ``emit``.

    Each token's new text goes out at once, except trailing spaces (held until the next token,
    because decoding may clean up a space before punctuation) and a trailing ``\ufffd`` (an
    incomplete UTF-8 sequence with byte-fallback vocabularies). The final delta carries the rest of the text, ``finish_reason`` and usage.
    """

    def __init__(self, tokenizer: Any, emit: Callable[[TextDelta], None]) -> None:
        self._tokenizer = tokenizer
        self._emit = emit
        self._tokens: list[int] = []
        self._sent = ""
        self.closed = False

    def push(self, token: int) -> None:
        if self.closed:
            return
        self._tokens.append(token)
        text = self._decode(self._tokens)
        ready = text.rstrip(" ")
        complete = not ready.endswith("\ufffd")
        if len(ready) > len(self._sent) and ready.startswith(self._sent) and complete:
            self._emit(TextDelta(text=ready[len(self._sent):]))
            self._sent = ready

    def close(self, outcome: FuseOutcome) -> None:
        """Send what is left of ``outcome.text`` and the end of the stream (once)."""
        if self.closed:
            return
        self.closed = True
        rest = outcome.text[len(self._sent):] if outcome.text.startswith(self._sent) else ""
        self._emit(TextDelta(text=rest, finish_reason=outcome.finish_reason, usage=outcome.usage))

    def _decode(self, tokens: Sequence[int]) -> str:
        return str(self._tokenizer.decode(tokens, skip_special_tokens=True))


@dataclass
class FuseJob:
    """One gateway request waiting for the model."""

    prompt: FusePrompt
    decoding: Decoding
    sink: RowSink | None = None  # set for streamed decoding
    cancelled: threading.Event = field(default_factory=threading.Event)


class _RowStreamer(BaseStreamer):
    """Splits each step's ``[batch]`` tokens over the rows: skips the first put (the decoder
    start ids), records every row's ids, and calls ``close(row, ids)`` at the row's EOS."""

    def __init__(self, jobs: Sequence[FuseJob], eos_id: int,
                 close: Callable[[int, Sequence[int]], None]) -> None:
        self._jobs = jobs
        self._eos_id = eos_id
        self._close = close
        self._started = False
        self._done = [False] * len(jobs)
        self.tokens: list[list[int]] = [[] for _ in jobs]

    def put(self, value: torch.Tensor) -> None:
        if not self._started:
            self._started = True
            return
        for row, token in enumerate(value.view(-1).tolist()):
            if self._done[row] or self._jobs[row].cancelled.is_set():
                continue
            self.tokens[row].append(int(token))
            sink = self._jobs[row].sink
            if token == self._eos_id:
                self._done[row] = True
                self._close(row, self.tokens[row])
            elif sink is not None:
                sink.push(int(token))

    def end(self) -> None:
        return None


class _StopCancelled(StoppingCriteria):
    """Row-wise stop for cancelled jobs; with beams, stop only when all jobs are cancelled."""

    def __init__(self, jobs: Sequence[FuseJob], num_beams: int) -> None:
        self._jobs = jobs
        self._num_beams = num_beams

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        flags = [job.cancelled.is_set() for job in self._jobs]
        if self._num_beams > 1:
            return torch.full((input_ids.shape[0],), all(flags), dtype=torch.bool,
                              device=input_ids.device)
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


def generate_ids(
    loaded: LoadedFuser, rows: Sequence[Sequence[int]], max_length: int, **kwargs: Any
) -> torch.Tensor:
    """Pad, trim all-pad columns and ``generate``; returns the output ids ``[rows, T]``."""
    ids, mask = truncate_and_pad(rows, loaded.pad_token_id, max_length)
    input_ids = torch.tensor(ids, dtype=torch.long, device=loaded.device)
    attention_mask = torch.tensor(mask, dtype=torch.long, device=loaded.device)
    with torch.inference_mode():
        out: torch.Tensor = loaded.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, **kwargs
        )
    return out


def run_batch(loaded: LoadedFuser, jobs: Sequence[FuseJob], max_length: int) -> list[FuseOutcome]:
    """Serve ``jobs`` (all waiting at once) and return one outcome per job, in order."""
    outcomes: dict[int, FuseOutcome] = {}
    order = sorted(range(len(jobs)), key=lambda i: repr(jobs[i].decoding))
    for _, group in groupby(order, key=lambda i: jobs[i].decoding):
        indices = list(group)
        for index, outcome in zip(indices, _run_group(loaded, [jobs[i] for i in indices],
                                                      max_length), strict=True):
            outcomes[index] = outcome
    return [outcomes[i] for i in range(len(jobs))]


def _run_group(loaded: LoadedFuser, jobs: Sequence[FuseJob], max_length: int
               ) -> list[FuseOutcome]:
    decoding = jobs[0].decoding
    finished: dict[int, FuseOutcome] = {}

    def outcome(row: int, ids: Sequence[int]) -> FuseOutcome:
        generated = [t for t in ids if t != loaded.pad_token_id]
        text = str(loaded.tokenizer.decode(ids, skip_special_tokens=True))
        reason = "stop" if loaded.eos_token_id in generated else "length"
        usage = Usage(len(jobs[row].prompt.input_ids), len(generated))
        return FuseOutcome(text=text, finish_reason=reason, usage=usage)

    def close_row(row: int, ids: Sequence[int]) -> None:
        finished[row] = outcome(row, ids)
        sink = jobs[row].sink
        if sink is not None:
            sink.close(finished[row])

    streamer = _RowStreamer(jobs, loaded.eos_token_id, close_row) if decoding.streams else None
    out = generate_ids(
        loaded, [job.prompt.input_ids for job in jobs], max_length,
        stopping_criteria=StoppingCriteriaList([_StopCancelled(jobs, decoding.num_beams)]),
        streamer=streamer, **decoding.generate_kwargs(),
    )
    results: list[FuseOutcome] = []
    for row, job in enumerate(jobs):
        done = finished.get(row) or outcome(row, out[row, 1:].tolist())
        if job.sink is not None:
            job.sink.close(done)
        results.append(done)
    return results
