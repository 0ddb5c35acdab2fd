"""``server.default_max_tokens``: the token limit of calls whose request sets none.

Real ``BlendEngine`` and OpenAI backends against the fake upstream, which records each body,
so what reaches a member, the LLM fuser and a pass-through model is checked on the wire.
"""

from __future__ import annotations

from typing import Any

import pytest

from ensemble.engine import BlendEngine
from ensemble.errors import ConfigError
from ensemble.types import BlendRequest, ChatMessage, SamplingParams
from gateway.config import parse_config
from gateway.testing import FakeUpstreams

ASK = (ChatMessage("user", "Name a fox."),)


def engine_config(up: FakeUpstreams, default: int | None, **extra: Any) -> Any:
    backend = {"kind": "openai", "base_url": up.ok, "model": "fake", "timeout_s": 5}
    return parse_config({
        "server": {"default_max_tokens": default},
        "backends": {"member": backend, "short": {**backend, "params": {"max_tokens": 9}},
                     "synth": {**backend, "expose": False}},
        "models": [
            {"id": "blend", "type": "ensemble", "ranker": {"type": "none"},
             "fuser": {"type": "llm", "backend": "synth"},
             "members": [{"backend": "member"}, {"backend": "short"},
                         {"backend": "member", "params": {"max_tokens": 33}}]},
        ],
        **extra,
    })


def sent_max_tokens(up: FakeUpstreams) -> list[Any]:
    return sorted((body.get("max_tokens") for _, body in up.requests), key=str)


async def ask(up: FakeUpstreams, default: int | None, model: str,
              params: SamplingParams) -> list[Any]:
    async with await BlendEngine.from_config(engine_config(up, default)) as engine:
        await engine.complete(BlendRequest(model, ASK, params))
    return sent_max_tokens(up)


async def test_default_fills_only_calls_that_set_no_limit(fake_upstreams: FakeUpstreams) -> None:
    # members: default, backend param 9, member param 33; then the fuser: default
    assert await ask(fake_upstreams, 512, "blend", SamplingParams()) == [33, 512, 512, 9]


async def test_request_max_tokens_wins_over_the_default(fake_upstreams: FakeUpstreams) -> None:
    assert await ask(fake_upstreams, 512, "blend", SamplingParams(max_tokens=7)) == [7, 7, 7, 7]


async def test_pass_through_gets_the_default(fake_upstreams: FakeUpstreams) -> None:
    assert await ask(fake_upstreams, 64, "member", SamplingParams()) == [64]


async def test_without_a_default_nothing_is_added(fake_upstreams: FakeUpstreams) -> None:
    assert await ask(fake_upstreams, None, "member", SamplingParams()) == [None]


def test_default_above_the_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="default_max_tokens=600 exceeds max_tokens_limit=500"):
        parse_config({"server": {"default_max_tokens": 600, "max_tokens_limit": 500},
                      "backends": {}})
