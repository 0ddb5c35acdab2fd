"""BlendEngine: routing, pass-through models, the ensemble pipeline, streaming, errors, cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import yaml

from ensemble.backends import factory as backend_factory
from ensemble.backends.base import Backend
from ensemble.config import BlendgateConfig, RankerConfig, parse_config
from ensemble.engine import BlendEngine
from ensemble.errors import (
    BackendStatusError,
    FuserError,
    NoCandidatesError,
    RankerError,
    UnknownModelError,
)
from ensemble.rankers.base import Ranker
from ensemble.types import (
    BlendReport,
    BlendRequest,
    BlendResult,
    ChatMessage,
    Ranking,
    SamplingParams,
    ServedModel,
    StreamEnd,
    TextDelta,
    Usage,
)
from gateway import config as gateway_config
from gateway.settings import default_config_path
from gateway.testing import FakeUpstreams
from tests.ensemble.scripted import ScriptedBackend

ASK = [ChatMessage("system", "Be terse."), ChatMessage("user", "Why is the sky blue?")]


def config(**ensemble: Any) -> BlendgateConfig:
    blend = {
        "id": "blend", "type": "ensemble",
        "members": [{"backend": "a", "samples": 2, "params": {"temperature": 0.8}},
                    {"backend": "b"}, {"backend": "c"}],
        "ranker": {"type": "none"},
        "fuser": {"type": "llm", "backend": "synth", "params": {"max_tokens": 50}},
        "top_k": 2, **ensemble,
    }
    return parse_config({
        "backends": {name: {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": name,
                            "expose": name != "c"}
                     for name in ("a", "b", "c", "synth")},
        "models": [blend, {"id": "solo", "type": "single", "backend": "b"}],
    })


def backends(**overrides: ScriptedBackend) -> dict[str, ScriptedBackend]:
    made = {
        "a": ScriptedBackend("a", texts=("Rayleigh scattering of short wavelengths.",
                                         "Blue light scatters more.")),
        "b": ScriptedBackend("b", texts=("Because of the ocean.",)),
        "c": ScriptedBackend("c", texts=("Nitrogen scatters blue light most.",)),
        "synth": ScriptedBackend("synth", texts=("Short blue wavelengths scatter most.",)),
    }
    made.update(overrides)
    return made


class LengthRanker:
    """Longest answer first: deterministic, and different from the member order."""

    name = "length"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[list[str]] = []

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        self.seen.append(list(candidates))
        if self.error is not None:
            raise self.error
        scores = tuple(float(len(c)) for c in candidates)
        ranks = tuple(1 + sum(o > s for o in scores) for s in scores)
        return Ranking(scores, ranks)

    async def aclose(self) -> None:
        return None


async def engine_with(cfg: BlendgateConfig, made: dict[str, ScriptedBackend],
                      ranker: LengthRanker | None = None) -> BlendEngine:
    if ranker is None:
        return await BlendEngine.from_config(cfg, backends=made)

    async def build(ranker_cfg: RankerConfig) -> Ranker:
        assert ranker is not None
        return ranker  # a test ranker behind the real pipeline

    return await BlendEngine.from_config(cfg, backends=made, ranker_builder=build)


async def collect(events: AsyncIterator[TextDelta | StreamEnd]) -> tuple[dict[int, str],
                                                                          StreamEnd]:
    texts: dict[int, str] = {}
    end = None
    async for event in events:
        assert end is None, "StreamEnd must be the last event"
        if isinstance(event, StreamEnd):
            end = event
        else:
            texts[event.index] = texts.get(event.index, "") + event.text
    assert end is not None
    return texts, end


def request(model: str = "blend", n: int = 1, **params: Any) -> BlendRequest:
    return BlendRequest(model, ASK, SamplingParams(**params), n=n)


async def test_models_lists_ensembles_then_singles_and_exposed_backends() -> None:
    async with await BlendEngine.from_config(config(), backends=backends()) as engine:
        assert engine.models() == [
            ServedModel("blend", "ensemble", ("a", "b", "c")),
            ServedModel("solo", "single", ("b",)),
            ServedModel("a", "single", ("a",)),
            ServedModel("b", "single", ("b",)),
            ServedModel("synth", "single", ("synth",)),
        ]
        with pytest.raises(UnknownModelError):
            await engine.complete(request("nope"))
        with pytest.raises(UnknownModelError):
            await collect(engine.stream(request("c")))  # not exposed


async def test_single_model_is_a_pure_pass_through() -> None:
    made = backends()
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        result = await engine.complete(request("solo", n=2, temperature=0.1))
        texts, end = await collect(engine.stream(request("a", n=2)))
    assert [c.text for c in result.choices] == ["Because of the ocean."] * 2
    assert result.report is None and result.usage == Usage(10, 4)
    assert [(call.n, call.streamed, call.params.temperature) for call in made["b"].calls] == [
        (2, False, 0.1)]
    assert texts == {0: "Rayleigh scattering of short wavelengths.",
                     1: "Blue light scatters more."}
    assert end.report is None and end.usage == Usage(10, 4)
    assert made["a"].calls[0].streamed and made["a"].calls[0].n == 2


async def test_ensemble_fans_out_ranks_keeps_top_k_and_fuses() -> None:
    made, ranker = backends(), LengthRanker()
    engine = await engine_with(config(), made, ranker)
    async with engine:
        result = await engine.complete(request(temperature=0.2))
    assert [c.text for c in result.choices] == ["Short blue wavelengths scatter most."]
    assert result.choices[0].finish_reason == "stop"
    # members: a once with n=2 and its own temperature filling nothing (request wins)
    assert [(c.n, c.params.temperature) for c in made["a"].calls] == [(2, 0.2)]
    report = result.report
    assert report is not None
    assert [(c.member, c.sample) for c in report.candidates] == [
        ("a", 0), ("a", 1), ("b", 0), ("c", 0)]
    assert report.ranking is not None and report.ranking.ranks == (1, 3, 4, 2)
    assert report.failures == () and report.fuser == "llm"
    t = report.timings
    assert 0 <= t.fanout_s <= t.total_s and 0 <= t.rank_s and 0 <= t.fuse_s <= t.total_s
    (fuse_call,) = made["synth"].calls
    assert fuse_call.streamed and fuse_call.params.max_tokens == 50
    system = fuse_call.messages[0].content
    assert system.startswith("Be terse.\n\n")
    assert system.endswith("1. Rayleigh scattering of short wavelengths.\n\n"
                           "2. Nitrogen scatters blue light most.")  # top_k=2, best first
    assert fuse_call.messages[1:] == ASK[1:]
    # usage = three member calls + the fuser call
    assert result.usage == Usage(40, 16)


async def test_member_params_fill_what_the_request_left_unset() -> None:
    made = backends()
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        await engine.complete(request())
    assert made["a"].calls[0].params.temperature == 0.8
    assert made["b"].calls[0].params.temperature is None


async def test_n_fused_answers_are_independent_concurrent_fuse_calls() -> None:
    made = backends(synth=ScriptedBackend("synth", texts=("fused",), delay_s=0.3))
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        started = time.perf_counter()
        result = await engine.complete(request(n=3))
        elapsed = time.perf_counter() - started
        texts, end = await collect(engine.stream(request(n=3)))
    assert elapsed < 0.8  # three 0.3 s fuse calls overlapped
    assert [(c.index, c.text) for c in result.choices] == [(0, "fused"), (1, "fused"),
                                                           (2, "fused")]
    assert texts == {0: "fused", 1: "fused", 2: "fused"}
    assert sum(1 for call in made["synth"].calls) == 6
    assert len([c for c in made["a"].calls]) == 2  # one fan-out per request, not per choice
    assert result.usage == end.usage == Usage(30 + 30, 12 + 12)
    # the report breaks the total down: each member call once, the n fuse calls together
    for report in (result.report, end.report):
        assert report is not None
        assert [(p.stage, p.name, p.usage) for p in report.usage] == [
            ("member", "a", Usage(10, 4)), ("member", "b", Usage(10, 4)),
            ("member", "c", Usage(10, 4)), ("fuser", "llm", Usage(30, 12))]
        assert sum((p.usage for p in report.usage), Usage()) == result.usage


async def test_usage_breakdown_of_a_model_free_fuser_and_a_failed_member() -> None:
    made = backends(b=ScriptedBackend("b", error=RuntimeError("down")))
    async with await BlendEngine.from_config(config(fuser={"type": "none"}),
                                             backends=made) as engine:
        result = await engine.complete(request())
    assert result.report is not None
    assert [(p.stage, p.name, p.usage) for p in result.report.usage] == [
        ("member", "a", Usage(10, 4)), ("member", "c", Usage(10, 4)),
        ("fuser", "none", Usage())]
    assert result.usage == Usage(20, 8)


async def test_stream_and_complete_have_the_same_structure() -> None:
    made = backends()
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        result = await engine.complete(request())
        texts, end = await collect(engine.stream(request()))
    assert texts == {0: result.choices[0].text}
    assert end.usage == result.usage
    assert end.report is not None and result.report is not None
    def shape(report: BlendReport) -> list[tuple[str, int, str, str | None]]:
        return [(c.member, c.sample, c.text, c.finish_reason) for c in report.candidates]

    assert shape(end.report) == shape(result.report)
    assert end.report.ranking == result.report.ranking
    assert end.report.fuser == result.report.fuser == "llm"
    assert made["synth"].calls[-1].streamed


async def test_failing_members_degrade_the_ensemble_and_are_reported() -> None:
    made = backends(b=ScriptedBackend("b", error=BackendStatusError("b is down", status=503)),
                    c=ScriptedBackend("c", delay_s=5))
    cfg = config(member_timeout_s=0.2)
    async with await BlendEngine.from_config(cfg, backends=made) as engine:
        result = await engine.complete(request())
        texts, end = await collect(engine.stream(request()))
    for report in (result.report, end.report):
        assert report is not None
        assert {c.member for c in report.candidates} == {"a"}
        assert {(f.member, f.error_type) for f in report.failures} == {
            ("b", "BackendStatusError"), ("c", "BackendTimeout")}
    assert texts[0] == result.choices[0].text


async def test_too_few_candidates_raise_no_candidates() -> None:
    down = BackendStatusError("down", status=500)
    made = backends(**{name: ScriptedBackend(name, error=down) for name in ("a", "b", "c")})
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        with pytest.raises(NoCandidatesError) as info:
            await engine.complete(request())
        assert len(info.value.failures) == 3
        with pytest.raises(NoCandidatesError):
            await collect(engine.stream(request()))
    assert made["synth"].calls == []


async def test_one_candidate_skips_ranking() -> None:
    cfg = config(members=[{"backend": "b"}], top_k=3)
    ranker = LengthRanker()
    engine = await engine_with(cfg, backends(), ranker)
    async with engine:
        result = await engine.complete(request())
    assert ranker.seen == []
    assert result.report is not None and result.report.ranking is None
    assert result.report.timings.rank_s < 0.01


async def test_ranker_failure_is_a_ranker_error() -> None:
    engine = await engine_with(config(), backends(), LengthRanker(ValueError("nan scores")))
    async with engine:
        with pytest.raises(RankerError, match="nan scores"):
            await engine.complete(request())


async def test_fuser_failure_mid_stream_raises_from_the_generator() -> None:
    synth = ScriptedBackend("synth", texts=("one two three four",), fail_after_words=2,
                            error=BackendStatusError("synth died", status=500))
    async with await BlendEngine.from_config(config(), backends=backends(synth=synth)) as engine:
        seen: list[str] = []
        with pytest.raises(FuserError, match="synth died"):
            async for event in engine.stream(request()):
                assert isinstance(event, TextDelta)
                seen.append(event.text)
        assert "".join(seen) == "one two"
        with pytest.raises(FuserError):
            await engine.complete(request())


async def test_cancelling_the_consumer_cancels_every_upstream_call() -> None:
    slow = {name: ScriptedBackend(name, delay_s=10) for name in ("a", "b", "c")}
    made = backends(**slow)
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        task = asyncio.create_task(engine.complete(request()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [slow[name].cancelled for name in ("a", "b", "c")] == [1, 1, 1]


async def test_closing_a_stream_early_stops_the_fuser_stream() -> None:
    closed: list[bool] = []

    class EndlessSynth(ScriptedBackend):
        async def stream(self, messages: Sequence[ChatMessage], params: SamplingParams,
                         n: int = 1) -> AsyncIterator[TextDelta]:
            try:
                while True:
                    await asyncio.sleep(0.01)
                    yield TextDelta("more ")
            finally:
                closed.append(True)

    made = backends(synth=EndlessSynth("synth"))
    async with await BlendEngine.from_config(config(), backends=made) as engine:
        events = engine.stream(request())
        assert isinstance(await anext(events), TextDelta)
        await events.aclose()  # what the gateway does when the client hangs up
    assert closed == [True]


async def test_service_ranker_is_rank_service_else_the_first_ensembles_model() -> None:
    built: list[LengthRanker] = []

    async def build(cfg: Any) -> Any:
        built.append(LengthRanker())  # stands in for the consensus model: no MiniLM load
        return built[-1]

    # only `none` rankers: no ranking model, /v1/rank answers 501 (not the members' order)
    async with await BlendEngine.from_config(config(), backends=backends()) as engine:
        assert engine.service_ranker() is None
    none_service = parse_config({"backends": {}, "rank_service": {"type": "none"}}).rank_service
    cfg = config(ranker={"type": "consensus"}).model_copy(update={"rank_service": none_service})
    async with await BlendEngine.from_config(cfg, backends=backends(),
                                             ranker_builder=build) as engine:
        assert engine.service_ranker() is None  # asked for none explicitly
    consensus = config(ranker={"type": "consensus"})
    built.clear()
    async with await BlendEngine.from_config(consensus, backends=backends(),
                                             ranker_builder=build) as engine:
        assert engine.service_ranker() is built[-1]  # the ensemble's, shared
        ranker_cfg = consensus.models[0].ranker  # type: ignore[union-attr]
        assert await engine.ranker(ranker_cfg) is built[-1] and len(built) == 1
    service = parse_config({"backends": {}, "rank_service": {"type": "consensus"}}).rank_service
    cfg = config(ranker={"type": "consensus"}).model_copy(update={"rank_service": service})
    built.clear()
    async with await BlendEngine.from_config(cfg, backends=backends(),
                                             ranker_builder=build) as engine:
        assert engine.service_ranker() is built[-1] and len(built) == 1  # same config


async def test_engine_owns_and_closes_the_backends_it_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config()
    built: dict[str, ScriptedBackend] = {}

    def build_backends(config: BlendgateConfig) -> dict[str, Backend]:
        built.update(backends())  # what the engine builds itself, as scripted stand-ins
        return dict(built)

    monkeypatch.setattr(backend_factory, "build_backends", build_backends)
    engine = await BlendEngine.from_config(cfg)
    assert sorted(built) == ["a", "b", "c", "synth"] and not any(
        b.closed for b in built.values())
    await engine.aclose()
    assert all(b.closed for b in built.values())
    injected = backends()
    async with await BlendEngine.from_config(cfg, backends=injected):
        pass
    assert not any(b.closed for b in injected.values())


# ------------------------------------------------------------------ the real offline default


@pytest.mark.slow
async def test_default_config_end_to_end_on_two_real_families(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = yaml.safe_load(default_config_path().read_text())
    # a shared CI host can be slow: this test is about what answers, not how fast
    data["models"][0]["member_timeout_s"] = data["models"][0]["deadline_s"] = 900
    # its full stage, every time: the cascade's first stage would answer most prompts alone
    # (tests/gateway/test_default_two_families.py covers the shipped cascade)
    del data["models"][0]["cascade"]
    cfg = gateway_config.parse_config(data)  # the shipped default has a server: section
    question = [ChatMessage("user", "What is the capital of France? Answer in one sentence.")]
    started = time.perf_counter()
    async with await BlendEngine.from_config(cfg) as engine:
        loaded = time.perf_counter()
        cold = await engine.complete(BlendRequest("blend", question,
                                                  SamplingParams(max_tokens=48)))
        first_answer = time.perf_counter()
        warm_started = time.perf_counter()
        texts, end = await collect(engine.stream(BlendRequest(
            "blend", question, SamplingParams(max_tokens=48))))
        warm = time.perf_counter() - warm_started
        single = await engine.complete(BlendRequest("smollm2", question,
                                                    SamplingParams(max_tokens=16), n=2))
    assert isinstance(cold, BlendResult) and cold.choices[0].text.strip()
    for report in (cold.report, end.report):
        assert report is not None
        assert len(report.candidates) == 6 and report.failures == ()
        assert [c.member for c in report.candidates].count("qwen") == 2  # two families
        assert report.ranking is not None and min(report.ranking.ranks) == 1
        assert report.fuser == "llm"
    assert texts[0].strip()
    assert cold.usage.completion_tokens > 0 and cold.usage.prompt_tokens > 0
    assert single.report is None and len(single.choices) == 2
    assert cold.report is not None and end.report is not None
    with capsys.disabled():
        print(f"\n[default.yaml] load {loaded - started:.1f}s, cold first blended answer "
              f"{first_answer - started:.1f}s (stages {cold.report.timings}), warm streamed "
              f"blended answer {warm:.1f}s (stages {end.report.timings})")


def http_config(urls: dict[str, str], **ensemble: Any) -> BlendgateConfig:
    return parse_config({
        "backends": {name: {"kind": "openai", "base_url": url, "model": "smollm2",
                            "timeout_s": 300} for name, url in urls.items()},
        "models": [{"id": "blend", "type": "ensemble", **ensemble}],
    })


async def test_fuser_upstream_dropping_its_stream_fails_the_stream_over_real_http(
    fake_upstreams: FakeUpstreams,
) -> None:
    cfg = http_config({"ok": fake_upstreams.ok, "hang": fake_upstreams.hang,
                       "drop": fake_upstreams.drop_stream},
                      members=[{"backend": "ok", "samples": 2}, {"backend": "hang"}],
                      ranker={"type": "none"}, fuser={"type": "llm", "backend": "drop"},
                      member_timeout_s=0.5)
    async with await BlendEngine.from_config(cfg) as engine:
        seen: list[str] = []
        with pytest.raises(FuserError, match="drop"):
            async for event in engine.stream(request()):
                assert isinstance(event, TextDelta)
                seen.append(event.text)
        assert seen, "the first half of the fused stream arrived before the drop"
    for _ in range(50):  # the fake server notices the hung-up member call shortly after
        if fake_upstreams.disconnects:
            break
        await asyncio.sleep(0.02)
    assert fake_upstreams.disconnects == 1


@pytest.mark.slow
async def test_ensemble_over_a_real_llama_cpp_server(llama_server_url: str) -> None:
    cfg = http_config({"llama": llama_server_url},
                      members=[{"backend": "llama", "samples": 3,
                                "params": {"temperature": 0.9}}],
                      ranker={"type": "consensus"},
                      fuser={"type": "llm", "backend": "llama", "params": {"temperature": 0}},
                      top_k=2, member_timeout_s=300, deadline_s=300)  # 2 shared, busy cores
    question = BlendRequest("blend", [ChatMessage("user", "Name a fruit that is yellow.")],
                            SamplingParams(max_tokens=24))
    async with await BlendEngine.from_config(cfg) as engine:
        result = await engine.complete(question)
        texts, end = await collect(engine.stream(question))
    for report in (result.report, end.report):
        assert report is not None and report.fuser == "llm" and report.failures == ()
        assert [c.sample for c in report.candidates] == [0, 1, 2]
        assert report.ranking is not None and len(report.ranking.ranks) == 3
    assert result.choices[0].text.strip() and texts[0].strip()
    assert result.usage.completion_tokens > 24  # three members plus the fuser
