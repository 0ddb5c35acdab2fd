"""The gateway serving real models, through the official openai client over real HTTP.

(a) ``inprocess``: the packaged default config's ensemble (SmolLM2 in-process via llama.cpp, MiniLM
    consensus ranking, LLM fusion on SmolLM2), with 3 samples instead of 4;
(b) ``llama_server``: the llama.cpp server process from ``tests/fixtures`` running SmolLM2 as
    an ``openai`` backend, blended by an LLM fuser on the same server.
Each serves its backend alone as a pass-through model too. Answers are kept short
(max_tokens) because everything runs on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from gateway.app import create_app
from gateway.config import parse_config
from gateway.settings import default_config_path
from tests.gateway.conftest import running_server

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
MAX_TOKENS = 24


def inprocess_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(default_config_path().read_text())
    data["backends"]["smollm2"]["context_length"] = 4096
    blend = data["models"][0]
    blend["members"][0]["samples"] = 3
    # the full blend path (fan-out, rank, fuse) every time: the cascade's first stage would
    # answer most prompts alone (test_default_two_families covers the shipped cascade)
    del blend["cascade"]
    data["server"]["api_keys_env"] = None
    return data


def llama_server_config(url: str) -> dict[str, Any]:
    return {
        "server": {"api_keys_env": None, "max_n": 2},
        "backends": {"smollm2": {"kind": "openai", "base_url": url, "model": "smollm2",
                                 "timeout_s": 120}},
        "models": [{
            "type": "ensemble", "id": "blend",
            "members": [{"backend": "smollm2", "samples": 2, "params": {"temperature": 0.8}},
                        {"backend": "smollm2", "params": {"temperature": 0.2}}],
            "ranker": {"type": "none"},
            "fuser": {"type": "llm", "backend": "smollm2", "params": {"temperature": 0.3}},
            "top_k": 2, "deadline_s": 120, "member_timeout_s": 120,
        }],
    }


@pytest.fixture(scope="module", params=["inprocess", "llama_server"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[openai.OpenAI, int]]:
    """An openai client on a running gateway, and how many candidates its ensemble makes."""
    if request.param == "inprocess":
        data = inprocess_config()
    else:
        data = llama_server_config(request.getfixturevalue("llama_server_url"))
    samples = sum(m.get("samples", 1) for m in data["models"][0]["members"])
    app = create_app(parse_config(data))
    with running_server(app, startup_timeout_s=600) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=300), samples


def test_blended_answer_with_candidates(api: tuple[openai.OpenAI, int]) -> None:
    client, samples = api
    completion = client.chat.completions.create(
        model="blend", messages=MESSAGES, max_tokens=MAX_TOKENS, seed=1,
        extra_body={"blend": {"return_candidates": True}})
    choice = completion.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    blend = completion.model_extra["blend"]  # type: ignore[index]
    assert len(blend["candidates"]) == samples and blend["failures"] == []
    assert all(c["text"] and c["latency_s"] > 0 for c in blend["candidates"])
    assert blend["fuser"] == "llm"
    assert blend["timings"]["fuse_s"] > 0 and blend["timings"]["total_s"] > 0


def test_blended_stream_with_usage(api: tuple[openai.OpenAI, int]) -> None:
    client, _ = api
    chunks = list(client.chat.completions.create(
        model="blend", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_pass_through_model(api: tuple[openai.OpenAI, int]) -> None:
    client, _ = api
    assert "smollm2" in {m.id for m in client.models.list().data}
    completion = client.chat.completions.create(
        model="smollm2", messages=MESSAGES, max_tokens=MAX_TOKENS,
        extra_body={"blend": {"return_candidates": True}})
    assert (completion.choices[0].message.content or "").strip()
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert "blend" not in (completion.model_extra or {})


def test_n2_blends_two_choices(api: tuple[openai.OpenAI, int]) -> None:
    client, _ = api
    completion = client.chat.completions.create(
        model="blend", messages=MESSAGES, max_tokens=MAX_TOKENS, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert all((c.message.content or "").strip() for c in completion.choices)
