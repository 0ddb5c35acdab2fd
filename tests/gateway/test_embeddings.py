"""``POST /v1/embeddings`` through the openai client and LangChain's ``OpenAIEmbeddings``,
against a real llama.cpp server serving SmolLM2 embeddings (mean pooling)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config import parse_config
from gateway.testing import FakeUpstreams
from tests.gateway.conftest import running_server

SMOLLM2_WIDTH = 576  # SmolLM2-135M's hidden size


def embeddings_config(embed_url: str, down_url: str) -> dict[str, Any]:
    return {
        "server": {"api_keys_env": None},
        "backends": {
            "embed": {"kind": "openai", "base_url": embed_url, "model": "smollm2",
                      "embeddings": True, "expose": False, "timeout_s": 60},
            "embed-down": {"kind": "openai", "base_url": down_url, "model": "m",
                           "embeddings": True, "expose": False, "connect_timeout_s": 1},
        },
    }


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture(scope="module")
def embed_server(smollm2_gguf_path: Path) -> Iterator[str]:
    from tests.fixtures.llama_server import start_llama_server

    with start_llama_server(smollm2_gguf_path, parallel=2, embedding=True) as url:
        yield url


@pytest.fixture(scope="module")
def gateway_url(embed_server: str) -> Iterator[str]:
    app = create_app(parse_config(embeddings_config(embed_server, "http://127.0.0.1:9/v1")))
    with running_server(app, startup_timeout_s=60) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["float", None])  # None: the SDK asks for base64
def test_openai_client_embeddings(gateway_url: str, encoding: str | None) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="k", max_retries=0)
    extra = {"encoding_format": encoding} if encoding else {}
    answer = client.embeddings.create(model="embed", input=["A fox.", "A fox.", "Tax law."],
                                      **extra)  # type: ignore[arg-type]
    assert answer.model == "embed"
    vectors = [d.embedding for d in answer.data]
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert all(len(v) == SMOLLM2_WIDTH for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.999  # same text
    assert cosine(vectors[0], vectors[2]) < cosine(vectors[0], vectors[1])
    assert answer.usage.prompt_tokens > 0


@pytest.mark.slow
def test_langchain_openai_embeddings(gateway_url: str) -> None:
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: send text, not tiktoken ids (meaningless to SmolLM2)
    embeddings = OpenAIEmbeddings(model="embed", base_url=f"{gateway_url}/v1", api_key="k",
                                  check_embedding_ctx_length=False, max_retries=0)
    documents = embeddings.embed_documents(["Foxes live in dens.", "The tax office."])
    query = embeddings.embed_query("Foxes live in dens.")
    assert len(documents) == 2 and len(query) == SMOLLM2_WIDTH
    assert cosine(query, documents[0]) > 0.999


@pytest.mark.slow
def test_errors_in_openai_shape(gateway_url: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError, match="must not be empty"):
        client.embeddings.create(model="embed", input=[])
    with pytest.raises(openai.InternalServerError) as down:
        client.embeddings.create(model="embed-down", input="x")
    assert down.value.status_code == 502


def test_upstream_error_is_relayed(fake_upstreams: FakeUpstreams) -> None:
    config = embeddings_config(fake_upstreams.refused, fake_upstreams.refused)
    with running_server(create_app(parse_config(config))) as url:
        reply = httpx.post(f"{url}/v1/embeddings", json={"model": "embed-down", "input": "x"})
        assert reply.status_code == 502
        assert reply.json()["error"]["code"] == "upstream_error"
        reply = httpx.post(f"{url}/v1/embeddings", json={"model": "embed", "input": 3})
        assert reply.status_code == 400 and reply.json()["error"]["type"] == \
            "invalid_request_error"
