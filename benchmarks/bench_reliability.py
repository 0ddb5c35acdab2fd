"""Reliability under faults and load: what fails, and whether it fails truthfully.

Every server runs on 127.0.0.1 and every loop is bounded. ``blendgate serve`` is a subprocess
(its CPU is read from /proc); its upstreams are ``fake_upstream.py`` (a fast, healthy OpenAI
server, subprocess) and the fault servers of ``gateway/testing.py`` (in this
process, on a thread: hang, 500, malformed, drop-mid-stream, stall, and a refused port).

Cases, each one row of the table (requests, failures, 5xx, and a note):

1. **fault matrix**: a pass-through model on each fault, streamed and not (failures expected;
   each must be a clean 5xx with the right code), and an ensemble of one healthy member plus
   that fault (0 failures expected).
2. **disconnect storm**: streamed ensembles whose ``llm`` fuser streams from a stalling
   upstream; each client hangs up at the first fused token. Afterwards no fuse call may still
   be open upstream, and a new blend must still get its first token.
3. **burst**: ``--burst`` concurrent streams (default 1,000) against the healthy upstream,
   pass-through and ensemble, for each ``--pools`` value of ``max_connections`` (the bounded
   queue holds the rest), plus a concurrency-32 run of the same requests as the baseline of
   gateway CPU per request.
4. **SIGTERM**: ``--sigterm`` streams (default 50) to an upstream answering after 2 s;
   SIGTERM lands once the gateway reports them all in flight (``/metrics``). Requests that
   did not finish cleanly are failures.

    python benchmarks/bench_reliability.py
    python benchmarks/bench_reliability.py --burst 1000 --pools 64,1024 --only burst
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.fixtures: the fault servers the test suite uses

from bench_common import free_port
from bench_gateway import OUT, Server, cpu_seconds, machine, start, stop

from gateway.testing import FakeUpstreams, start_fake_upstreams

MESSAGES = [{"role": "user", "content": "Say something about foxes."}]
FAULTS = ("hang", "error500", "refused", "malformed", "drop_stream")
BURST_TIMEOUT_S = 300.0


@dataclass
class Row:
    case: str
    requests: int = 0
    failures: int = 0
    server_errors: int = 0  # HTTP 5xx, or an error event with a 5xx-class code
    codes: dict[str, int] = field(default_factory=dict)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> None:
        self.requests += 1
        if not outcome.ok:
            self.failures += 1
            self.codes[outcome.code] = self.codes.get(outcome.code, 0) + 1
        if outcome.status >= 500:
            self.server_errors += 1


@dataclass
class Outcome:
    ok: bool
    status: int  # HTTP status; for an in-band stream error, the error's class (500+)
    code: str  # error code, or the transport error's class name
    latency_s: float = 0.0


# --------------------------------------------------------------------------- servers


def blendgate_argv(config: dict[str, Any], name: str) -> tuple[list[str], int]:
    path = OUT / f"bench-reliability-{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    binary = str(Path(sys.executable).with_name("blendgate"))
    return [binary, "serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error"], port


@contextmanager
def blendgate(config: dict[str, Any], name: str) -> Iterator[Server]:
    argv, port = blendgate_argv(config, name)
    env = {k: v for k, v in os.environ.items() if k != "BLENDGATE_API_KEYS"}
    server = start(f"blendgate-{name}", argv, port, "/health", timeout_s=120, env=env)
    try:
        yield server
    finally:
        stop(server)


def backend(url: str, model: str = "fake", **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "base_url": url, "model": model, "expose": False,
            "timeout_s": 2, "connect_timeout_s": 1, **extra}


def ensemble(model_id: str, members: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "ensemble", "id": model_id, "ranker": {"type": "none"},
            "members": [{"backend": m} for m in members], **extra}


# --------------------------------------------------------------------------- requests


STREAM_ERROR_5XX = {"upstream_error", "upstream_timeout", "all_members_failed",
                    "deadline_exceeded", "members_timed_out", "overloaded", "fuser_failed",
                    "fuser_upstream_error", "fuser_timeout", "fuser_rejected", "ranker_failed",
                    "internal_error"}


async def call(client: httpx.AsyncClient, model: str, stream: bool) -> Outcome:
    body = {"model": model, "messages": MESSAGES, "stream": stream, "max_tokens": 32}
    started = time.perf_counter()
    try:
        if not stream:
            response = await client.post("/v1/chat/completions", json=body)
            elapsed = time.perf_counter() - started
            if response.status_code == 200:
                return Outcome(True, 200, "", elapsed)
            return Outcome(False, response.status_code,
                           str(response.json()["error"]["code"]), elapsed)
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Outcome(False, response.status_code,
                               str(response.json()["error"]["code"]),
                               time.perf_counter() - started)
            error, done = None, False
            async for line in response.aiter_lines():
                if line.startswith('data: {"error"'):
                    error = json.loads(line[6:])["error"]
                done = done or line == "data: [DONE]"
        elapsed = time.perf_counter() - started
        if error is not None:
            code = str(error["code"])
            return Outcome(False, 502 if code in STREAM_ERROR_5XX else 400, code, elapsed)
        return Outcome(done, 200, "" if done else "no [DONE]", elapsed)
    except (httpx.HTTPError, json.JSONDecodeError, KeyError) as exc:
        return Outcome(False, 0, type(exc).__name__, time.perf_counter() - started)


async def run_many(base: str, model: str, total: int, concurrency: int,
                   stream: bool) -> list[Outcome]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    outcomes: list[Outcome] = []
    remaining = total
    async with httpx.AsyncClient(base_url=base.removesuffix("/v1"), limits=limits,
                                 timeout=httpx.Timeout(BURST_TIMEOUT_S, pool=None)) as client:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                outcomes.append(await call(client, model, stream))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


# --------------------------------------------------------------------------- cases


def fault_matrix(faults: FakeUpstreams, fast: str, per_case: int) -> list[Row]:
    backends = {"good": backend(fast)}
    models = []
    for mode in FAULTS:
        backends[mode] = backend(faults.url(mode), expose=True)
        models.append(ensemble(f"good+{mode}", ["good", mode]))
    rows = []
    with blendgate({"server": {"api_keys_env": None}, "backends": backends, "models": models},
                   "faults") as gateway:
        for mode in FAULTS:
            for model, expect in ((mode, "clean 5xx expected"), (f"good+{mode}", "0 failures")):
                row = Row(f"fault {model}", note=expect)
                for stream in (False, True):
                    for outcome in asyncio.run(run_many(gateway.base_url, model, per_case // 2,
                                                        4, stream)):
                        row.count(outcome)
                rows.append(row)
    return rows


async def _hang_up_at_first_token(client: httpx.AsyncClient, model: str) -> Outcome:
    body = {"model": model, "messages": MESSAGES, "stream": True}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return Outcome(False, response.status_code, "status")
            async for line in response.aiter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    return Outcome(True, 200, "")
        return Outcome(False, 200, "no content")
    except httpx.HTTPError as exc:
        return Outcome(False, 0, type(exc).__name__)


def disconnect_storm(faults: FakeUpstreams, fast: str, stops: int) -> Row:
    config = {"server": {"api_keys_env": None},
              "backends": {"good": backend(fast), "stalling": backend(faults.stall_stream,
                                                                      timeout_s=60)},
              "models": [ensemble("fuse-stall", ["good"],
                                  fuser={"type": "llm", "backend": "stalling"})]}
    row = Row("disconnect storm", note="stop at the first fused token")
    with blendgate(config, "storm") as gateway:
        async def storm() -> list[Outcome]:
            async with httpx.AsyncClient(base_url=gateway.base_url.removesuffix("/v1"),
                                         timeout=30) as client:
                sem = asyncio.Semaphore(32)

                async def one() -> Outcome:
                    async with sem:
                        return await _hang_up_at_first_token(client, "fuse-stall")

                return await asyncio.gather(*(one() for _ in range(stops)))

        for outcome in asyncio.run(storm()):
            row.count(outcome)
        deadline = time.monotonic() + 10
        while faults.streaming and time.monotonic() < deadline:
            time.sleep(0.05)
        row.extra["fuse_calls_still_open"] = faults.streaming
        row.extra["upstream_saw_hangups"] = faults.stream_hangups

        async def after() -> Outcome:
            async with httpx.AsyncClient(base_url=gateway.base_url.removesuffix("/v1"),
                                         timeout=30) as client:
                return await _hang_up_at_first_token(client, "fuse-stall")

        row.extra["next_blend_works"] = asyncio.run(after()).ok
    row.note += (f"; {row.extra['fuse_calls_still_open']} fuse calls left open, "
                 f"next blend works: {row.extra['next_blend_works']}")
    return row


def burst(fast: str, concurrency: int, total: int, pools: list[int]) -> list[Row]:
    rows = []
    for pool in pools:
        # Timeouts above the time a burst takes to drain on a slow shared host: what is
        # measured is whether the gateway itself fails requests (pool starvation, connect
        # timeouts), not how long the queue is.
        # connect_timeout_s: the default (5 s), as deployed; the fault cases use 1 s.
        healthy = {"timeout_s": BURST_TIMEOUT_S, "connect_timeout_s": 5.0,
                   "max_connections": pool}
        backends = {"fast": backend(fast, expose=True, **healthy),
                    "fast2": backend(fast, **healthy)}
        models = [ensemble("duo", ["fast", "fast2"], fuser={"type": "none"},
                           member_timeout_s=BURST_TIMEOUT_S, deadline_s=BURST_TIMEOUT_S)]
        with blendgate({"server": {"api_keys_env": None}, "backends": backends,
                        "models": models}, f"burst-{pool}") as gateway:
            for model in ("fast", "duo"):
                for level in (32, concurrency):
                    asyncio.run(run_many(gateway.base_url, model, 64, 32, True))  # warm
                    cpu0, t0 = cpu_seconds(gateway.process.pid), time.perf_counter()
                    outcomes = asyncio.run(run_many(gateway.base_url, model,
                                                    total if level > 32 else 320, level, True))
                    wall = time.perf_counter() - t0
                    cpu = cpu_seconds(gateway.process.pid) - cpu0
                    row = Row(f"burst {model} c={level} pool={pool}")
                    for outcome in outcomes:
                        row.count(outcome)
                    latencies = sorted(o.latency_s for o in outcomes)
                    row.extra = {"cpu_ms_per_request": 1000 * cpu / max(1, len(outcomes)),
                                 "p50_ms": 1000 * latencies[len(latencies) // 2],
                                 "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
                                 "requests_per_s": len(outcomes) / wall}
                    row.note = (f"CPU {row.extra['cpu_ms_per_request']:.2f} ms/req, p50 "
                                f"{row.extra['p50_ms']:.0f} ms, p99 {row.extra['p99_ms']:.0f} ms")
                    rows.append(row)
                    print(f"  {row.case}: {row.failures} failures, {row.note}", flush=True)
    return rows


def sigterm(fast: str, in_flight: int) -> Row:
    config = {"server": {"api_keys_env": None},
              "backends": {"slow": backend(fast, model="fake-delay-2000", expose=True,
                                           timeout_s=10)}}
    argv, port = blendgate_argv(config, "sigterm")
    env = {k: v for k, v in os.environ.items() if k != "BLENDGATE_API_KEYS"}
    gateway = start("blendgate-sigterm", argv, port, "/health", timeout_s=120, env=env)
    row = Row("SIGTERM", note="once all were in flight")
    try:
        async def load() -> list[Outcome]:
            task = asyncio.ensure_future(run_many(gateway.base_url, "slow", in_flight,
                                                  in_flight, True))
            metrics = gateway.base_url.removesuffix("/v1") + "/metrics"
            async with httpx.AsyncClient(timeout=5) as probe:
                for _ in range(100):  # bounded: 10 s
                    text = (await probe.get(metrics)).text
                    if f"blendgate_requests_in_flight {in_flight}.0" in text:
                        break
                    await asyncio.sleep(0.1)
                else:
                    row.note = "not all in flight after 10 s"
            os.killpg(gateway.process.pid, signal.SIGTERM)
            return await task

        started = time.monotonic()
        for outcome in asyncio.run(load()):
            row.count(outcome)
        gateway.process.wait(timeout=30)
        row.extra["exit_s"] = time.monotonic() - started
        row.extra["exit_code"] = gateway.process.returncode
        row.note += f"; exited {row.extra['exit_code']} after {row.extra['exit_s']:.1f} s"
    finally:
        stop(gateway)
    return row


# --------------------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    print(f"\n{'case':44} {'requests':>8} {'failures':>8} {'5xx':>5}  note")
    for row in rows:
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(row.codes.items()))
        note = row.note + (f" [{codes}]" if codes else "")
        print(f"{row.case:44} {row.requests:>8} {row.failures:>8} {row.server_errors:>5}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="faults,storm,burst,sigterm",
                        help="comma-separated cases to run")
    parser.add_argument("--per-fault", type=int, default=20, help="requests per fault case")
    parser.add_argument("--stops", type=int, default=200, help="disconnects in the storm")
    parser.add_argument("--burst", type=int, default=1000, help="concurrent streams")
    parser.add_argument("--burst-requests", type=int, default=None,
                        help="requests per burst case (default: one per stream)")
    parser.add_argument("--pools", default="64,256,1024", help="max_connections values")
    parser.add_argument("--sigterm", type=int, default=50, help="streams in flight")
    args = parser.parse_args()
    only = set(args.only.split(","))
    rows: list[Row] = []
    with ExitStack() as stack:
        faults = stack.enter_context(start_fake_upstreams())
        port = free_port()
        upstream = start("fake-upstream", [sys.executable, str(HERE / "fake_upstream.py"),
                                           "--port", str(port)], port, "/health", timeout_s=30)
        stack.callback(stop, upstream)
        if "faults" in only:
            rows += fault_matrix(faults, upstream.base_url, args.per_fault)
        if "storm" in only:
            rows.append(disconnect_storm(faults, upstream.base_url, args.stops))
        if "burst" in only:
            pools = [int(p) for p in args.pools.split(",")]
            rows += burst(upstream.base_url, args.burst, args.burst_requests or args.burst, pools)
        if "sigterm" in only:
            rows.append(sigterm(upstream.base_url, args.sigterm))
    print_table(rows)
    out = OUT / f"bench_reliability-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine(), "args": vars(args),
                               "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
