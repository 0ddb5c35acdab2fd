"""Gateway overhead on loopback: blendgate (and LiteLLM's proxy) in front of an instant upstream.

Two measurements, one run:

1. Pass-through overhead. The same chat request goes to the fake upstream directly, through
   ``blendgate serve`` (a single, pass-through model) and through ``litellm`` (proxy), with
   closed-loop clients at concurrency 1, 16 and 64. Overhead = latency through the gateway
   minus latency direct, at p50 and p99. Targets are interleaved round by round, so drift on a
   shared machine hits all three alike.
2. Fan-out overhead of an ensemble. Three members answer after 10, 20 and 30 ms; ranker
   ``none``, fuser ``none``. From each response's ``blend`` report
   (``{"blend": {"return_candidates": true}}``): overhead = client latency - slowest
   member's latency - rank time - fuse time. Compared with a direct request to the slowest
   member's model, too.

Every server is a subprocess on 127.0.0.1, started and stopped here; request counts and
time are bounded. Prints a table and ratios, writes benchmarks/out/bench_gateway-<time>.json.

    python benchmarks/bench_gateway.py                       # blendgate and LiteLLM
    python benchmarks/bench_gateway.py --litellm ''          # blendgate only
    python benchmarks/bench_gateway.py --requests 300,1000,2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench_common import free_port, quantile

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
MESSAGES = [{"role": "user", "content": "Say something about foxes."}]
MEMBER_DELAYS_MS = (10, 20, 30)
# One client key for both gateways (each checks it on every request); the upstream ignores it.
API_KEY = "sk-bench-" + secrets.token_hex(24)


# --------------------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    base_url: str  # ends in /v1
    process: subprocess.Popen[bytes]
    log: Path


def start(name: str, argv: list[str], port: int, health: str, *, timeout_s: float,
          env: dict[str, str] | None = None, log_dir: Path | None = None) -> Server:
    """Start ``argv`` in its own session, wait until ``GET health`` answers 200.

    Its output goes to ``<log_dir>/<name>.log`` (default ``benchmarks/out/logs``)."""
    log_dir = log_dir or OUT / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    server = Server(name, f"http://127.0.0.1:{port}/v1", process, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop(server)
    raise RuntimeError(f"{name} not healthy after {timeout_s:.0f}s; see {log}")


def stop(server: Server, interrupt: signal.Signals = signal.SIGTERM, grace_s: float = 15) -> None:
    """Signal the process group this script started for ``server``; SIGKILL after ``grace_s``."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, interrupt)
        try:
            server.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) from /proc/<pid>/stat; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its live descendants (Linux /proc)."""
    stats = {int(d): _stat(int(d)) for d in os.listdir("/proc") if d.isdigit()}
    children: dict[int, list[int]] = {}
    for child, stat in stats.items():
        if stat:
            children.setdefault(stat[0], []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        stat = stats.get(current)
        total += stat[1] if stat else 0.0
        todo += children.get(current, [])
    return total


def gateway_config(upstream: str) -> dict[str, Any]:
    def backend(model: str, expose: bool) -> dict[str, Any]:
        return {"kind": "openai", "base_url": upstream, "model": model, "timeout_s": 30,
                "max_connections": 256, "expose": expose}

    backends = {"fake": backend("fake", True)}
    for delay in MEMBER_DELAYS_MS:
        backends[f"member-{delay}ms"] = backend(f"fake-delay-{delay}", False)
    fanout = {"id": "fanout", "type": "ensemble",
              "members": [{"backend": f"member-{d}ms"} for d in MEMBER_DELAYS_MS],
              "ranker": {"type": "none"}, "fuser": {"type": "none"},
              "top_k": len(MEMBER_DELAYS_MS), "min_candidates": len(MEMBER_DELAYS_MS)}
    return {"server": {"api_keys": [API_KEY], "api_keys_env": None}, "backends": backends,
            "models": [fanout]}


def litellm_config(upstream: str) -> dict[str, Any]:
    return {"model_list": [{"model_name": "fake", "litellm_params": {
                "model": "openai/fake", "api_base": upstream, "api_key": "unused"}}],
            "litellm_settings": {"drop_params": True, "telemetry": False},
            "general_settings": {"master_key": API_KEY}}


def start_blendgate(binary: str, upstream: str) -> Server:
    path = OUT / "bench-blendgate.yaml"
    path.write_text(yaml.safe_dump(gateway_config(upstream), sort_keys=False))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "BLENDGATE_API_KEYS"}
    return start("blendgate", [binary, "serve", "--config", str(path), "--host", "127.0.0.1",
                               "--port", str(port)], port, "/health", timeout_s=180, env=env)


def start_litellm(binary: str, upstream: str) -> Server:
    path = OUT / "bench-litellm.yaml"
    path.write_text(yaml.safe_dump(litellm_config(upstream), sort_keys=False))
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_TELEMETRY": "False"}
    return start("litellm", [binary, "--config", str(path), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"],
                 port, "/health/liveliness", timeout_s=240, env=env)


# --------------------------------------------------------------------------- load


@dataclass
class Sample:
    latency_s: float
    status: int
    body: dict[str, Any] | None = None


async def closed_loop(base_url: str, model: str, concurrency: int, total: int,
                      time_cap_s: float, extra: dict[str, Any] | None = None,
                      keep_body: bool = False) -> tuple[list[Sample], float]:
    """``concurrency`` workers send requests back to back until ``total`` are done."""
    payload = {"model": model, "messages": MESSAGES, "max_tokens": 64, **(extra or {})}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    samples: list[Sample] = []
    remaining = total
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        deadline = time.perf_counter() + time_cap_s

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    response = await client.post("/chat/completions", json=payload)
                    body = response.json() if keep_body and response.status_code == 200 else None
                    samples.append(Sample(time.perf_counter() - t0, response.status_code, body))
                except httpx.HTTPError:
                    samples.append(Sample(time.perf_counter() - t0, 0))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return samples, time.perf_counter() - started


@dataclass
class Summary:
    target: str
    concurrency: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    overhead_p50_ms: float | None = None
    overhead_p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def summarise(target: str, concurrency: int, samples: list[Sample], elapsed: float) -> Summary:
    ok = [s.latency_s for s in samples if s.status == 200] or [float("nan")]
    failed = [s.status for s in samples if s.status != 200]
    summary = Summary(target, concurrency, len(samples), len(failed),
                      len(samples) / elapsed if elapsed else 0.0,
                      1000 * quantile(ok, 0.50), 1000 * quantile(ok, 0.99))
    if failed:  # 0 = no HTTP answer (connection error or client timeout)
        summary.extra["error_statuses"] = {str(c): failed.count(c) for c in sorted(set(failed))}
    return summary


async def pass_through(targets: dict[str, Server], upstream: Server,
                       levels: list[tuple[int, int]], rounds: int,
                       time_cap_s: float) -> list[Summary]:
    """Latency per target; also the CPU time per request of the target's own process tree
    (the upstream's for ``direct``), which does not depend on how busy the machine is."""
    results: list[Summary] = []
    for concurrency, total in levels:
        per_round = max(concurrency, total // rounds)
        samples: dict[str, list[Sample]] = {t: [] for t in targets}
        elapsed = dict.fromkeys(targets, 0.0)
        cpu = {t: [0.0, 0.0] for t in targets}  # [server, upstream] CPU seconds
        for server in targets.values():  # warm-up: connections, imports, first-call paths
            await closed_loop(server.base_url, "fake", concurrency, 2 * concurrency, time_cap_s)
        for _ in range(rounds):
            for name, server in targets.items():
                before = cpu_seconds(server.process.pid), cpu_seconds(upstream.process.pid)
                got, took = await closed_loop(server.base_url, "fake", concurrency, per_round,
                                              time_cap_s / rounds)
                cpu[name][0] += cpu_seconds(server.process.pid) - before[0]
                cpu[name][1] += cpu_seconds(upstream.process.pid) - before[1]
                samples[name] += got
                elapsed[name] += took
        direct: Summary | None = None
        for name in targets:
            summary = summarise(name, concurrency, samples[name], elapsed[name])
            count = max(1, len(samples[name]))
            summary.extra["server_cpu_ms_per_req"] = 1000 * cpu[name][0] / count
            if name == "direct":
                direct = summary
            else:
                summary.extra["upstream_cpu_ms_per_req"] = 1000 * cpu[name][1] / count
            if direct is not None and summary is not direct:
                summary.overhead_p50_ms = summary.p50_ms - direct.p50_ms
                summary.overhead_p99_ms = summary.p99_ms - direct.p99_ms
            results.append(summary)
    return results


def fanout_overheads(samples: list[Sample]) -> dict[str, list[float]]:
    """Per response: the overheads read off its ``blend`` report (milliseconds)."""
    out: dict[str, list[float]] = {"external_ms": [], "internal_ms": [], "fanout_sched_ms": []}
    for sample in samples:
        blend = (sample.body or {}).get("blend")
        if not blend or not blend.get("candidates"):
            continue
        slowest = max(c["latency_s"] for c in blend["candidates"])
        timings = blend["timings"]
        stages = timings["rank_s"] + timings["fuse_s"]
        out["external_ms"].append(1000 * (sample.latency_s - slowest - stages))
        out["internal_ms"].append(1000 * (timings["total_s"] - slowest - stages))
        out["fanout_sched_ms"].append(1000 * (timings["fanout_s"] - slowest))
    return out


async def fan_out(gateway: str, direct: str, levels: list[tuple[int, int]],
                  time_cap_s: float) -> list[Summary]:
    results: list[Summary] = []
    slowest_model = f"fake-delay-{max(MEMBER_DELAYS_MS)}"
    options = {"blend": {"return_candidates": True}}
    for concurrency, total in levels:
        await closed_loop(gateway, "fanout", concurrency, 2 * concurrency, time_cap_s, options)
        base, base_elapsed = await closed_loop(direct, slowest_model, concurrency, total,
                                               time_cap_s)
        samples, elapsed = await closed_loop(gateway, "fanout", concurrency, total, time_cap_s,
                                             options, keep_body=True)
        baseline = summarise(f"direct {slowest_model}", concurrency, base, base_elapsed)
        summary = summarise("blendgate fanout x3", concurrency, samples, elapsed)
        summary.overhead_p50_ms = summary.p50_ms - baseline.p50_ms
        summary.overhead_p99_ms = summary.p99_ms - baseline.p99_ms
        overheads = fanout_overheads(samples)
        summary.extra |= {
            "reports": len(overheads["external_ms"]),
            **{f"{key}_p50": quantile(vals, 0.5) for key, vals in overheads.items() if vals},
            **{f"{key}_p99": quantile(vals, 0.99) for key, vals in overheads.items() if vals},
        }
        results += [baseline, summary]
    return results


# --------------------------------------------------------------------------- report


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:8.2f}"


def print_table(title: str, rows: list[Summary]) -> None:
    print(f"\n{title}")
    print(f"{'conc':>4} {'target':<26} {'reqs':>5} {'err':>4} {'req/s':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}")
    for r in rows:
        print(f"{r.concurrency:>4} {r.target:<26} {r.requests:>5} {r.errors:>4} {r.rps:>8.1f} "
              f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {fmt(r.overhead_p50_ms):>8} "
              f"{fmt(r.overhead_p99_ms):>8}")
        if r.extra:
            print("     " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in r.extra.items()))


def ratios(rows: list[Summary]) -> list[dict[str, Any]]:
    """LiteLLM's overhead divided by blendgate's, per concurrency level."""
    out = []
    by_level: dict[int, dict[str, Summary]] = {}
    for r in rows:
        by_level.setdefault(r.concurrency, {})[r.target] = r
    for level, targets in sorted(by_level.items()):
        ours, theirs = targets.get("blendgate"), targets.get("litellm")
        if not ours or not theirs:
            continue
        entry: dict[str, Any] = {"concurrency": level,
                                 "throughput_blendgate_over_litellm": ours.rps / theirs.rps}
        for q in ("p50", "p99"):
            a, b = getattr(ours, f"overhead_{q}_ms"), getattr(theirs, f"overhead_{q}_ms")
            entry[f"overhead_{q}_litellm_over_blendgate"] = b / a if a and a > 0 else None
        a, b = ours.extra["server_cpu_ms_per_req"], theirs.extra["server_cpu_ms_per_req"]
        entry["cpu_per_req_litellm_over_blendgate"] = b / a if a > 0 else None
        out.append(entry)
    return out


def package_version(binary: str, package: str) -> str:
    python = Path(binary).parent / "python"
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": os.getloadavg()}


# --------------------------------------------------------------------------- main


def parse_levels(text: str, concurrencies: list[int]) -> list[tuple[int, int]]:
    counts = [int(x) for x in text.split(",")]
    if len(counts) != len(concurrencies):
        raise SystemExit(f"--requests needs {len(concurrencies)} counts")
    return list(zip(concurrencies, counts, strict=False))


def find_binary(arg: str | None, name: str) -> str | None:
    if arg is not None:
        return arg or None
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--requests", default="300,1200,2400",
                        help="total requests per target at each concurrency level")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout-requests", default="150,600",
                        help="ensemble requests at concurrency 1 and 16")
    parser.add_argument("--time-cap", type=float, default=60.0,
                        help="seconds, per target and level")
    parser.add_argument("--blendgate", default=None, help="blendgate executable")
    parser.add_argument("--litellm", default=None,
                        help="litellm executable (e.g. /tmp/benchvenv/bin/litellm); '' skips it")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    concurrencies = [int(x) for x in args.concurrency.split(",")]
    levels = parse_levels(args.requests, concurrencies)
    fan_levels = parse_levels(args.fanout_requests, [1, 16])
    blendgate_bin = find_binary(args.blendgate, "blendgate")
    litellm_bin = find_binary(args.litellm, "litellm")
    if not blendgate_bin:
        raise SystemExit("blendgate executable not found (pip install -e . or --blendgate)")

    record: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                          time.gmtime())}
    servers: list[Server] = []
    with ExitStack() as cleanup:
        cleanup.callback(lambda: [stop(s) for s in reversed(servers)])
        port = free_port()
        servers.append(start("upstream", [sys.executable, str(HERE / "fake_upstream.py"),
                                          "--port", str(port)], port, "/health", timeout_s=30))
        upstream = servers[0].base_url
        servers.append(start_blendgate(blendgate_bin, upstream))
        targets = {"direct": servers[0], "blendgate": servers[1]}
        record["versions"] = {"blendgate": package_version(blendgate_bin, "blendgate")}
        if litellm_bin:
            servers.append(start_litellm(litellm_bin, upstream))
            targets["litellm"] = servers[-1]
            record["versions"]["litellm"] = package_version(litellm_bin, "litellm")
        else:
            print("LiteLLM not found: measuring blendgate only (--litellm PATH to add it)")

        print(f"machine: {record['machine']['cpus']} CPUs, {record['machine']['cpu']}; "
              f"versions {record['versions']}")
        passthrough = asyncio.run(pass_through(targets, servers[0], levels, args.rounds,
                                               args.time_cap))
        fanout = asyncio.run(fan_out(servers[1].base_url, upstream, fan_levels, args.time_cap))

    print_table("Pass-through (+ = minus direct)", passthrough)
    print_table(f"Ensemble fan-out, members {MEMBER_DELAYS_MS} ms, ranker none, fuser none "
                "(+ = minus direct to the slowest member)", fanout)
    record.update(passthrough=[asdict(r) for r in passthrough],
                  fanout=[asdict(r) for r in fanout], ratios=ratios(passthrough),
                  settings=vars(args), loadavg_at_end=os.getloadavg())
    print_ratios(record["ratios"])
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"bench_gateway-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"\nwrote {path}")


def print_ratios(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        print("ratio at concurrency {concurrency}: LiteLLM overhead / blendgate overhead "
              "p50 {p50}, p99 {p99}; gateway CPU per request LiteLLM / blendgate {cpu}; "
              "throughput blendgate / LiteLLM {tp:.2f}x".format(
                  concurrency=entry["concurrency"],
                  p50=_ratio(entry["overhead_p50_litellm_over_blendgate"]),
                  p99=_ratio(entry["overhead_p99_litellm_over_blendgate"]),
                  cpu=_ratio(entry["cpu_per_req_litellm_over_blendgate"]),
                  tp=entry["throughput_blendgate_over_litellm"]))


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
