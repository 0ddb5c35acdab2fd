"""The shipped offline default blends two model families (SmolLM2-135M and
Qwen2.5-Coder-0.5B), served over real HTTP and called with the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from openai import OpenAI

from gateway.app import create_app
from gateway.config import parse_config
from gateway.settings import DEFAULT_CONFIG
from tests.gateway.conftest import running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[OpenAI]:
    data: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["server"]["api_keys_env"] = None
    # a shared CI host can be slow: this test is about what answers, not how fast
    data["models"][0]["member_timeout_s"] = data["models"][0]["deadline_s"] = 600
    with running_server(create_app(parse_config(data)), startup_timeout_s=600) as url:
        yield OpenAI(base_url=url + "/v1", api_key="unused", timeout=600)


def test_models_lists_the_ensemble_and_both_families(client: OpenAI) -> None:
    assert {m.id for m in client.models.list().data} >= {"blend", "smollm2", "qwen"}


def test_the_blend_answers_from_both_families(client: OpenAI) -> None:
    """The default is a cascade: one answer of each family first; the full blend (four SmolLM2
    and two Qwen samples, fused) only when those two have little in common."""
    reply = client.chat.completions.create(
        model="blend", max_tokens=24,
        messages=[{"role": "user", "content": "Name one primary colour."}],
        extra_body={"blend": {"return_candidates": True}},
    )
    assert reply.choices[0].message.content and reply.choices[0].message.content.strip()
    blend = (reply.model_extra or {})["blend"]
    members = sorted(c["member"] for c in blend["candidates"])
    if blend["path"]["path"] == "cascade":
        assert members == ["stage0:qwen", "stage0:smollm2"], blend
        assert blend["path"]["agreement"] >= 0.3 and not blend["path"]["fused"]
    else:
        assert blend["path"]["path"] == "fused", blend
        assert members == ["qwen"] * 2 + ["smollm2"] * 4, blend
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_each_family_also_answers_alone(client: OpenAI) -> None:
    for model in ("smollm2", "qwen"):
        reply = client.chat.completions.create(
            model=model, max_tokens=8, messages=[{"role": "user", "content": "Say hi."}])
        assert reply.model == model and reply.choices[0].message.content
