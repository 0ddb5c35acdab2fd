"""A scripted in-process ``Backend`` for engine and fan-out unit tests.

It answers from a fixed list of texts after an optional delay, or raises a given error, and
records every call and whether it was cancelled. Fault injection over real HTTP uses the
``fake_upstreams`` fixture instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta, Usage


@dataclass
class Call:
    messages: list[ChatMessage]
    params: SamplingParams
    n: int
    streamed: bool


@dataclass
class ScriptedBackend:
    name: str
    texts: Sequence[str] = ("scripted answer",)
    answers: Sequence[Completion] = ()  # complete(): these (cycled) instead of ``texts``
    delay_s: float = 0.0
    error: Exception | None = None
    fail_after_words: int | None = None  # streaming: raise ``error`` after this many words
    usage: Usage = field(default_factory=lambda: Usage(prompt_tokens=10, completion_tokens=4))
    calls: list[Call] = field(default_factory=list)
    cancelled: int = 0
    closed: bool = False

    async def complete(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> list[Completion]:
        self.calls.append(Call(list(messages), params, n, streamed=False))
        await self._wait()
        if self.error is not None:
            raise self.error
        if self.answers:
            return [self.answers[i % len(self.answers)] for i in range(n)]
        return [
            Completion(self.texts[i % len(self.texts)], "stop", self.usage if i == 0 else None)
            for i in range(n)
        ]

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, n: int = 1
    ) -> AsyncIterator[TextDelta]:
        self.calls.append(Call(list(messages), params, n, streamed=True))
        await self._wait()
        if self.error is not None and self.fail_after_words is None:
            raise self.error
        for i in range(n):
            words = self.texts[i % len(self.texts)].split(" ")
            for j, word in enumerate(words):
                if self.fail_after_words is not None and j == self.fail_after_words:
                    assert self.error is not None
                    raise self.error
                await asyncio.sleep(0)
                yield TextDelta(word if j == 0 else " " + word, index=i)
            last = i == n - 1
            yield TextDelta("", index=i, finish_reason="stop", usage=self.usage if last else None)

    async def _wait(self) -> None:
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def aclose(self) -> None:
        self.closed = True
