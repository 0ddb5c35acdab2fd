"""One process vs Ray Serve (1 and 2 ranker replicas): requests/s, p50/p99, CPU per request.

    python benchmarks/bench_scale.py                       # both endpoints, concurrency 1 and 8
    python benchmarks/bench_scale.py --requests 100 --concurrency 1,4,16 --json out.json

What runs, each time as ``blendgate serve`` in a subprocess (its own session), one after the
other, with the same config:

- ``process``: ``blendgate serve`` (uvicorn; PairRM in the process);
- ``ray-1`` / ``ray-2``: ``blendgate serve --engine ray``: a local Ray (started by that
  process), the gateway ingress (1 replica) and the PairRM deployment at 1 or 2 replicas.

The model is the tiny random PairRM of the test suite (hidden 32, 2 layers), so a ranking costs
almost nothing: the figures measure the serving machinery and the hop, not the model. The
members come from ``benchmarks/fake_upstream.py`` (instant). Requests:

- ``rank``: ``POST /v1/rank``, 3 candidates (6 ordered pairs);
- ``chat``: ``POST /v1/chat/completions`` to an ensemble of 3 samples, PairRM, fuser none.

CPU per request = CPU time of the server's whole process tree (for Ray: GCS, raylet, the
proxy, every replica) during the run, divided by the requests; ``idle CPU %`` is the same tree
measured for ``--idle-s`` seconds before any load (Ray's background work). The hop's cost is
the difference between the Ray and the process rows. The load generator runs here and is not
counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from bench_common import quantile
from bench_gateway import cpu_seconds, start, stop

from tests.pairrm.conftest import build_tiny_checkpoints

PROMPT = "hello, how are you!"
CANDIDATES = ["get out!", "hi! I am fine, thanks!", "bye!"]


@dataclass
class Row:
    mode: str
    endpoint: str
    concurrency: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    idle_cpu_percent: float


def config(checkpoint: Path, upstream: str, ranker_replicas: int) -> dict[str, Any]:
    return {
        "server": {"api_keys_env": None, "drain_grace_s": 5},
        "backends": {"fake": {"kind": "openai", "base_url": upstream, "model": "fake"}},
        "models": [{"type": "ensemble", "id": "blend", "members": [{"backend": "fake",
                                                                     "samples": 3}],
                    "ranker": {"type": "pairrm", "checkpoint": str(checkpoint),
                               "device": "cpu"},
                    "fuser": {"type": "none"}, "top_k": 1}],
        "ray": {"gateway": {"num_replicas": 1, "num_cpus": 0},
                "ranker": {"num_replicas": ranker_replicas, "num_cpus": 0,
                           "max_batch_size": 16, "batch_wait_ms": 2}},
    }


async def load(url: str, endpoint: str, concurrency: int, total: int) -> tuple[list[float], int,
                                                                              float]:
    if endpoint == "rank":
        path, body = "/v1/rank", {"prompt": PROMPT, "candidates": CANDIDATES}
    else:
        path, body = "/v1/chat/completions", {
            "model": "blend", "messages": [{"role": "user", "content": PROMPT}]}
    latencies: list[float] = []
    errors = 0
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    response = await client.post(path, json=body)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - started


def measure(mode: str, url: str, pid: int, args: argparse.Namespace) -> list[Row]:
    for endpoint in ("rank", "chat"):  # warm-up: connections, first batches
        asyncio.run(load(url, endpoint, 2, 10))
    cpu0 = cpu_seconds(pid)
    time.sleep(args.idle_s)
    idle = 100 * (cpu_seconds(pid) - cpu0) / args.idle_s
    rows = []
    for endpoint in ("rank", "chat"):
        for concurrency in args.concurrency:
            cpu0 = cpu_seconds(pid)
            latencies, errors, elapsed = asyncio.run(
                load(url, endpoint, concurrency, args.requests))
            cpu = cpu_seconds(pid) - cpu0
            done = len(latencies) + errors
            ok = latencies or [float("nan")]
            row = Row(mode, endpoint, concurrency, done, errors, done / elapsed,
                      1000 * quantile(ok, 0.5), 1000 * quantile(ok, 0.99),
                      1000 * cpu / max(1, done), idle)
            rows.append(row)
            print(f"{mode:8} {endpoint:5} c={concurrency:<3} {row.rps:7.1f} req/s  "
                  f"p50 {row.p50_ms:7.1f} ms  p99 {row.p99_ms:7.1f} ms  "
                  f"CPU {row.cpu_ms_per_request:6.1f} ms/req  errors {errors}  "
                  f"(idle CPU {idle:.0f}%)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per endpoint and level")
    parser.add_argument("--concurrency", default="1,8",
                        type=lambda s: [int(c) for c in s.split(",")])
    parser.add_argument("--modes", default="process,ray-1,ray-2")
    parser.add_argument("--port", type=int, default=18710, help="gateway port; +1 upstream")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        checkpoint = build_tiny_checkpoints(work)["hf"]
        upstream_port = args.port + 1
        upstream = subprocess.Popen(
            [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(upstream_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for mode in args.modes.split(","):
                replicas = int(mode.split("-")[1]) if mode.startswith("ray") else 1
                path = work / f"{mode}.yaml"
                path.write_text(yaml.safe_dump(config(
                    checkpoint, f"http://127.0.0.1:{upstream_port}/v1", replicas)))
                argv = [str(bin_dir / "blendgate"), "serve", "--config", str(path),
                        "--port", str(args.port), "--log-level", "warning"]
                if mode.startswith("ray"):
                    argv += ["--engine", "ray"]
                url = f"http://127.0.0.1:{args.port}"
                started = time.perf_counter()
                server = start(mode, argv, args.port, "/health", timeout_s=300, log_dir=work)
                print(f"{mode}: healthy after {time.perf_counter() - started:.1f} s", flush=True)
                try:
                    rows += measure(mode, url, server.process.pid, args)
                finally:
                    # SIGINT: Ray shuts its local cluster down on the way out; it may take a while.
                    stop(server, signal.SIGINT, grace_s=60)
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": {"cores": os.cpu_count(), "load_average": os.getloadavg()},
            "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
