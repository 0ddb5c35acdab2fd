"""Frontend background tasks (title, tags, follow-ups) go to one backend, not the ensemble."""

from __future__ import annotations

import pytest

from ensemble.errors import ConfigError
from ensemble.types import BlendRequest, ChatMessage, SamplingParams
from tests.ensemble.test_engine import backends, config, engine_with

TITLE = [ChatMessage("user", "### Task:\nGenerate a concise title summarizing the chat.")]
CHAT = [ChatMessage("user", "Why is the sky blue?")]


async def test_task_prompts_go_to_the_task_backend_alone() -> None:
    made = backends()
    cfg = config(tasks={"backend": "b", "max_tokens_at_most": 64, "max_tokens": 40})
    async with await engine_with(cfg, made) as engine:
        title = await engine.complete(BlendRequest("blend", TITLE, SamplingParams()))
        short = await engine.complete(BlendRequest("blend", CHAT, SamplingParams(max_tokens=32)))
        assert [len(made[n].calls) for n in "abc"] == [0, 2, 0] and not made["synth"].calls
        assert title.report is None and short.report is None  # plain pass-through answers
        assert title.model == "blend"
        assert [c.params.max_tokens for c in made["b"].calls] == [40, 32]  # capped at 40
        chat = await engine.complete(BlendRequest("blend", CHAT, SamplingParams(max_tokens=500)))
        assert chat.report is not None and len(made["a"].calls) == 1  # the ensemble answered


async def test_without_tasks_config_task_prompts_are_blended() -> None:
    made = backends()
    async with await engine_with(config(), made) as engine:
        result = await engine.complete(BlendRequest("blend", TITLE, SamplingParams()))
    assert result.report is not None and made["synth"].calls


def test_task_backend_must_exist() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        config(tasks={"backend": "nope"})
