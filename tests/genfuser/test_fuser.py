"""GenFuser as the gateway's fuser: decoding modes, streaming, disconnects, batching, fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ensemble.compat.fusion import FuserSettings, fuse_batch
from ensemble.config import GenFuserConfig
from ensemble.errors import FuserError
from ensemble.fusers.base import Fuser
from ensemble.fusers.genfuser import GenFuser
from ensemble.fusers.genfuser.generate import Decoding, decoding_for
from ensemble.fusers.genfuser.prompt import encode_input
from ensemble.types import ChatMessage, FuseStream, SamplingParams, TextDelta

CHAT = [ChatMessage("system", "Be brief."), ChatMessage("user", "how are you today?")]
CANDIDATES = ["I am fine, thanks!", "fine", "hello world, how are you?"]


class RecordingFuser:
    """A stand-in fallback: records its calls and answers one fixed delta."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[list[ChatMessage], list[str]]] = []
        self.closed = False

    async def fuse(self, messages: Sequence[ChatMessage], candidates: Sequence[str],
                   params: SamplingParams) -> FuseStream:
        self.calls.append((list(messages), list(candidates)))
        return FuseStream(fuser="llm", deltas=_one("fallback text"))

    async def aclose(self) -> None:
        self.closed = True


async def _one(text: str) -> AsyncIterator[TextDelta]:
    yield TextDelta(text=text, finish_reason="stop")


async def _collect(stream: FuseStream) -> list[TextDelta]:
    return [delta async for delta in stream.deltas]


def _cfg(path: Path, **overrides: Any) -> GenFuserConfig:
    return GenFuserConfig(checkpoint=str(path), device="cpu", **overrides)


class _Counter:
    """Forward hook: how many times a module ran, and the batch size of each run."""

    def __init__(self, module: Any) -> None:
        self.batches: list[int] = []
        self._handle = module.register_forward_hook(self)

    def __call__(self, module: Any, args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        self.batches.append(int(hidden.shape[0]))


async def test_satisfies_the_fuser_protocol(tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir))
    try:
        assert isinstance(fuser, Fuser)
    finally:
        await fuser.aclose()


async def test_beam_search_sends_the_complete_text_once(tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir))
    try:
        stream = await fuser.fuse(CHAT, CANDIDATES, SamplingParams(max_tokens=12))
        deltas = await _collect(stream)
        expected = fuse_batch(fuser.loaded, FuserSettings(), ["how are you today?"],
                              [CANDIDATES], ["Be brief."], max_new_tokens=12)
    finally:
        await fuser.aclose()
    assert stream.fuser == "genfuser"
    assert len(deltas) == 1
    assert deltas[0].text == expected[0] != ""
    assert deltas[0].finish_reason in ("stop", "length")
    prompt = encode_input(fuser.loaded.tokenizer, "Be brief.", "how are you today?", CANDIDATES)
    assert deltas[0].usage is not None
    assert deltas[0].usage.prompt_tokens == len(prompt.input_ids)  # the system message is in it
    assert 1 <= deltas[0].usage.completion_tokens <= 12


async def test_greedy_streams_tokens_and_equals_the_unstreamed_text(
        tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir, num_beams=1))
    try:
        deltas = await _collect(await fuser.fuse(CHAT, CANDIDATES, SamplingParams(max_tokens=40)))
        unstreamed = fuse_batch(fuser.loaded, FuserSettings(), ["how are you today?"],
                                [CANDIDATES], ["Be brief."], num_beams=1, max_new_tokens=40)
    finally:
        await fuser.aclose()
    assert len(deltas) > 3  # token by token, not one block
    assert "".join(d.text for d in deltas) == unstreamed[0]
    assert all(d.finish_reason is None for d in deltas[:-1])
    last = deltas[-1]
    assert last.finish_reason in ("stop", "length") and last.usage is not None
    assert last.usage.completion_tokens == 40 if last.finish_reason == "length" else True


async def test_leaving_the_stream_stops_generation(endless_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(endless_fuser_dir, num_beams=1, max_new_tokens=96))
    steps = _Counter(fuser.loaded.model.decoder)
    try:
        stream = await fuser.fuse(CHAT, CANDIDATES, SamplingParams())
        received = []
        async for delta in stream.deltas:
            received.append(delta)
            if len(received) == 2:
                break
        await stream.deltas.aclose()  # type: ignore[attr-defined]
    finally:
        await fuser.aclose()  # waits for the device thread
    assert all(d.finish_reason is None for d in received)
    assert len(steps.batches) < 96


async def test_cancelling_the_reader_stops_generation(endless_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(endless_fuser_dir, num_beams=1, max_new_tokens=96))
    steps = _Counter(fuser.loaded.model.decoder)
    first = asyncio.Event()

    async def read() -> None:
        stream = await fuser.fuse(CHAT, CANDIDATES, SamplingParams())
        async for _ in stream.deltas:
            first.set()

    try:
        reader = asyncio.create_task(read())
        await asyncio.wait_for(first.wait(), 30)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
    finally:
        await fuser.aclose()
    assert len(steps.batches) < 96


async def test_concurrent_requests_share_one_generate_call(tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir, batch_wait_ms=200, max_batch_size=8))
    encoder = _Counter(fuser.loaded.model.encoder)
    chats = [[ChatMessage("user", q)] for q in ("hello", "how are you today?", "a fox", "dogs")]
    params = SamplingParams(max_tokens=8)
    try:
        together = await asyncio.gather(
            *[_collect(await fuser.fuse(chat, CANDIDATES, params)) for chat in chats])
        batched = list(encoder.batches)
        alone = [await _collect(await fuser.fuse(chat, CANDIDATES, params)) for chat in chats]
    finally:
        await fuser.aclose()
    assert batched == [4]  # one encoder pass for the four requests
    assert [d[-1].text for d in together] == [d[-1].text for d in alone]
    assert [d[-1].usage for d in together] == [d[-1].usage for d in alone]


async def test_a_burst_stays_one_batch_although_tokenising_takes_longer_than_the_wait(
        tiny_fuser_dir: Path) -> None:
    # The first request tokenises at once, the others take several ms each (long candidates),
    # more than the 10 ms window in total; encoded together, the burst reaches the model
    # together (encoded one by one, the first request would start a batch of its own).
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir, batch_wait_ms=10, max_batch_size=8))
    encoder = _Counter(fuser.loaded.model.encoder)
    long = [" ".join([word] * 3000) for word in ("fox", "dog", "hello")]
    requests = [("a", ["fine"]), ("b", long), ("c", long), ("d", long)]
    params = SamplingParams(max_tokens=2)

    async def one(question: str, candidates: list[str]) -> list[TextDelta]:
        return await _collect(await fuser.fuse([ChatMessage("user", question)], candidates,
                                               params))

    try:
        await asyncio.gather(*[one(q, c) for q, c in requests])
    finally:
        await fuser.aclose()
    assert encoder.batches == [4]


async def test_different_decodings_in_one_batch_run_as_separate_groups(
        tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir, batch_wait_ms=200))
    encoder = _Counter(fuser.loaded.model.encoder)
    try:
        results = await asyncio.gather(*[
            _collect(await fuser.fuse(CHAT, CANDIDATES, SamplingParams(max_tokens=n)))
            for n in (4, 4, 9)])
    finally:
        await fuser.aclose()
    assert sorted(encoder.batches) == [1, 2]
    assert [r[-1].usage.completion_tokens <= n for r, n in zip(results, (4, 4, 9), strict=False)
            if r[-1].usage] == [True, True, True]


async def test_long_candidate_goes_to_the_fallback(tiny_fuser_dir: Path) -> None:
    fallback = RecordingFuser()
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir), fallback=fallback)
    long = " ".join(["fox"] * 200)
    candidates = ["fine", long]
    try:
        stream = await fuser.fuse(CHAT, candidates, SamplingParams(max_tokens=4))
        deltas = await _collect(stream)
        short = await fuser.fuse(CHAT, ["fine", "I am fine"], SamplingParams(max_tokens=4))
        await _collect(short)
    finally:
        await fuser.aclose()
    assert stream.fuser == "llm" and [d.text for d in deltas] == ["fallback text"]
    assert fallback.calls == [(CHAT, ["fine", long])]  # whole candidates, not the cut
    assert candidates == ["fine", long]
    assert short.fuser == "genfuser"
    assert fallback.closed


async def test_without_fallback_a_long_candidate_is_cut(tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir))
    long = " ".join(["fox"] * 200)
    candidates = ["fine", long]
    try:
        stream = await fuser.fuse(CHAT, candidates, SamplingParams(max_tokens=4))
        deltas = await _collect(stream)
    finally:
        await fuser.aclose()
    prompt = encode_input(fuser.loaded.tokenizer, "Be brief.", "how are you today?", candidates)
    assert stream.fuser == "genfuser"
    assert candidates == ["fine", long]
    assert prompt.cut_candidates == (1,)
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.prompt_tokens == len(prompt.input_ids)


async def test_no_candidates_is_an_error(tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir))
    try:
        with pytest.raises(FuserError):
            await fuser.fuse(CHAT, [], SamplingParams())
    finally:
        await fuser.aclose()


def test_decoding_modes_from_config_and_request() -> None:
    beam = GenFuserConfig()
    assert decoding_for(beam, SamplingParams()) == Decoding(num_beams=4, max_new_tokens=128)
    assert decoding_for(beam, SamplingParams(max_tokens=10, temperature=0.7)) == Decoding(
        num_beams=4, max_new_tokens=10)
    assert decoding_for(beam, SamplingParams(max_tokens=500)).max_new_tokens == 128
    sample = GenFuserConfig(do_sample=True, num_beams=1)
    assert decoding_for(sample, SamplingParams(temperature=0.5, top_p=0.9)) == Decoding(
        num_beams=1, max_new_tokens=128, do_sample=True, temperature=0.5, top_p=0.9)
    assert decoding_for(sample, SamplingParams(temperature=0.0)) == Decoding(
        num_beams=1, max_new_tokens=128)
    kwargs = decoding_for(sample, SamplingParams(temperature=0.5)).generate_kwargs()
    assert kwargs == {"num_beams": 1, "max_new_tokens": 128, "num_return_sequences": 1,
                      "do_sample": True, "temperature": 0.5, "top_p": 1.0}
    assert Decoding(num_beams=1).streams and not Decoding(num_beams=4).streams


async def test_sampling_streams_and_respects_max_tokens(tiny_fuser_dir: Path) -> None:
    fuser = await GenFuser.load(_cfg(tiny_fuser_dir, num_beams=1, do_sample=True))
    try:
        deltas = await _collect(await fuser.fuse(
            CHAT, CANDIDATES, SamplingParams(temperature=1.5, top_p=0.95, max_tokens=30)))
    finally:
        await fuser.aclose()
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens <= 30
    assert deltas[-1].finish_reason in ("stop", "length")
