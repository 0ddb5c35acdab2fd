"""LLM (Mixture-of-Agents) fuser: the synthesis prompt, and streaming from a real llama.cpp."""

from __future__ import annotations

import pytest

from ensemble.config import LLMFuserConfig, SelectFuserConfig
from ensemble.errors import BackendStatusError, ConfigError, FuserError
from ensemble.fusers.factory import build_fuser
from ensemble.fusers.llm import DEFAULT_TEMPLATE, LLMFuser
from ensemble.fusers.select import SelectFuser
from ensemble.types import ChatMessage, SamplingParams
from tests.ensemble.scripted import ScriptedBackend

SYSTEM = ChatMessage("system", "You are a pirate. Always answer like a pirate.")
CONVERSATION = [
    SYSTEM,
    ChatMessage("user", "Name a primary colour."),
    ChatMessage("assistant", "Arr, red be one."),
    ChatMessage("user", "Name another one."),
]
CANDIDATES = ["Blue, matey.", "  Yellow be another.\n", "Green."]


def fuser(template: str | None = None) -> LLMFuser:
    return LLMFuser(ScriptedBackend("synth"), LLMFuserConfig(backend="synth", template=template))


def test_prompt_keeps_the_users_system_message_first_then_the_instruction() -> None:
    prompt = fuser().prompt(CONVERSATION, CANDIDATES)
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    system = prompt[0].content
    assert system.startswith(SYSTEM.content + "\n\n")
    assert "never mention the candidates" in system
    assert system.endswith("1. Blue, matey.\n\n2. Yellow be another.\n\n3. Green.")
    assert prompt[1:] == CONVERSATION[1:]


def test_prompt_without_a_system_message_puts_the_instruction_first() -> None:
    prompt = fuser().prompt(CONVERSATION[1:], CANDIDATES[:1])
    assert prompt[0].role == "system"
    assert prompt[0].content == DEFAULT_TEMPLATE.replace("{candidates}", "1. Blue, matey.")
    assert prompt[1:] == CONVERSATION[1:]


def test_custom_template_must_have_the_placeholder_and_other_braces_are_literal() -> None:
    custom = fuser(template="Merge {these} answers:\n{candidates}\nBe brief.")
    system = custom.prompt(CONVERSATION[1:], ["x", "y"])[0].content
    assert system == "Merge {these} answers:\n1. x\n\n2. y\nBe brief."
    with pytest.raises(ConfigError, match="candidates"):
        fuser(template="no placeholder here")


async def test_request_params_win_and_config_params_fill_the_gaps() -> None:
    backend = ScriptedBackend("synth", texts=("fused answer",))
    llm = LLMFuser(backend, LLMFuserConfig(backend="synth",
                                           params={"temperature": 0.3, "max_tokens": 64,
                                                   "top_k": 20}))
    stream = await llm.fuse(CONVERSATION, CANDIDATES, SamplingParams(temperature=0.9))
    assert stream.fuser == "llm"
    deltas = [d async for d in stream.deltas]
    assert "".join(d.text for d in deltas) == "fused answer"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage is not None
    (call,) = backend.calls
    assert call.streamed and call.n == 1
    assert (call.params.temperature, call.params.max_tokens) == (0.9, 64)
    assert call.params.extra["top_k"] == 20


async def test_backend_failure_mid_stream_becomes_fuser_error() -> None:
    backend = ScriptedBackend("synth", texts=("one two three",), fail_after_words=2,
                              error=BackendStatusError("upstream died", status=502))
    stream = await LLMFuser(backend, LLMFuserConfig(backend="synth")).fuse(
        CONVERSATION, CANDIDATES, SamplingParams())
    seen: list[str] = []
    with pytest.raises(FuserError, match="upstream died"):
        async for delta in stream.deltas:
            seen.append(delta.text)
    assert seen == ["one", " two"]


async def test_factory_builds_llm_and_select_fusers() -> None:
    backends = {"synth": ScriptedBackend("synth")}
    assert isinstance(await build_fuser(LLMFuserConfig(backend="synth"), backends), LLMFuser)
    select = await build_fuser(SelectFuserConfig(), backends)
    assert isinstance(select, SelectFuser)
    stream = await select.fuse(CONVERSATION, ["best", "second"], SamplingParams())
    assert stream.fuser == "none"
    assert [d.text async for d in stream.deltas] == ["best"]
    with pytest.raises(ConfigError, match="unknown backend"):
        await build_fuser(LLMFuserConfig(backend="missing"), backends)


@pytest.mark.slow
async def test_streams_a_synthesis_from_a_real_llama_cpp_server(llama_server_url: str) -> None:
    from ensemble.backends.openai_compat import OpenAICompatBackend
    from ensemble.config import OpenAIBackendConfig

    backend = OpenAICompatBackend(
        "smollm2", OpenAIBackendConfig(base_url=llama_server_url, model="smollm2"))
    try:
        llm = LLMFuser(backend, LLMFuserConfig(backend="smollm2",
                                               params={"temperature": 0.0, "max_tokens": 24}))
        messages = [ChatMessage("system", "You are a helpful assistant."),
                    ChatMessage("user", "What is the capital of France?")]
        stream = await llm.fuse(messages, ["Paris.", "The capital of France is Paris.",
                                           "It is Paris."], SamplingParams())
        deltas = [d async for d in stream.deltas]
    finally:
        await backend.aclose()
    text = "".join(d.text for d in deltas)
    assert len([d for d in deltas if d.text]) > 1  # really streamed, token by token
    assert "paris" in text.lower()
    assert deltas[-1].finish_reason in ("stop", "length")
    usage = [d.usage for d in deltas if d.usage is not None]
    assert usage and usage[-1].prompt_tokens > 50 and usage[-1].completion_tokens <= 24


async def test_factory_gives_genfuser_an_llm_fallback_on_the_named_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ensemble.config import GenFuserConfig
    from ensemble.fusers.genfuser import GenFuser

    loaded: list[tuple[GenFuserConfig, object]] = []

    async def fake_load(cls: type, cfg: GenFuserConfig, fallback: object = None) -> SelectFuser:
        loaded.append((cfg, fallback))
        return SelectFuser()

    monkeypatch.setattr(GenFuser, "load", classmethod(fake_load))
    synth = ScriptedBackend("synth", texts=("from the fallback",))
    with_fallback = GenFuserConfig(fallback=LLMFuserConfig(backend="synth"))
    await build_fuser(with_fallback, {"synth": synth})
    await build_fuser(GenFuserConfig(), {"synth": synth})
    (cfg, fallback), (_, none) = loaded
    assert cfg is with_fallback and none is None
    assert isinstance(fallback, LLMFuser)
    stream = await fallback.fuse(CONVERSATION, CANDIDATES, SamplingParams())
    assert "".join([d.text async for d in stream.deltas]) == "from the fallback"
