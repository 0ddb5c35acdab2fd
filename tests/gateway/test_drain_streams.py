"""SIGTERM during requests: in flight they get ``server.drain_grace_s``; then a stream ends
with one error event (``server_shutting_down``) and ``data: [DONE]``, a plain request with a
503, and the process exits right after.

The first test runs a real ``blendgate serve`` process (uvicorn's and sse-starlette's own
signal handling included) over the fake upstreams' slow ``trickle`` stream and sends it
SIGTERM; the others serve the scripted engine with ``DrainingServer`` on a thread and set
``should_exit``, which is what uvicorn's SIGTERM handler does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.cli import server_config
from gateway.config import GatewayConfig
from gateway.drain import DrainingServer
from gateway.state import state_of
from gateway.testing import FakeUpstreams
from tests.gateway.conftest import ENSEMBLE, ScriptedEngine, free_port, make_config

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Tell me about foxes."}]
GRACE_S = 2.0
EXIT_MARGIN_S = 3.0  # the cut, closing the engine and exiting, on a busy 2-core CI host


def read_stream(url: str, body: dict[str, Any], events: list[tuple[float, str]],
                first_content: threading.Event) -> None:
    """Collect ``(arrival time, data)`` of each SSE event of a streamed completion."""
    with httpx.stream("POST", url, json=body, timeout=60) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append((time.monotonic(), line[len("data: "):]))
                if '"content":"' in line and '"content":""' not in line:
                    first_content.set()


def error_codes(events: list[tuple[float, str]]) -> list[str]:
    return [json.loads(data)["error"]["code"] for _, data in events if data.startswith('{"error"')]


@pytest.fixture
def serve_process(fake_upstreams: FakeUpstreams, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    config = tmp_path / "drain.yaml"
    config.write_text(f"""
server: {{api_keys_env: null, drain_grace_s: {GRACE_S}}}
backends:
  slow: {{kind: openai, base_url: "{fake_upstreams.trickle}", model: fake, timeout_s: 60}}
  stuck: {{kind: openai, base_url: "{fake_upstreams.hang}", model: fake, timeout_s: 60}}
""", encoding="utf-8")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
         "--port", str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "blendgate serve never became healthy"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def test_sigterm_mid_stream_error_event_then_done_and_a_prompt_exit(
    serve_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = serve_process
    events: list[tuple[float, str]] = []
    first_content = threading.Event()
    streamer = threading.Thread(target=read_stream, args=(
        f"{url}/v1/chat/completions",
        {"model": "slow", "messages": MESSAGES, "stream": True}, events, first_content))
    plain: list[httpx.Response] = []
    waiter = threading.Thread(target=lambda: plain.append(httpx.post(
        f"{url}/v1/chat/completions", json={"model": "stuck", "messages": MESSAGES},
        timeout=60)))
    streamer.start()
    waiter.start()
    assert first_content.wait(30), "the stream never started"
    time.sleep(0.3)  # the plain request is in flight too

    process.send_signal(signal.SIGTERM)
    sigterm = time.monotonic()
    process.wait(timeout=GRACE_S + EXIT_MARGIN_S + 10)
    exited = time.monotonic() - sigterm
    streamer.join(10)
    waiter.join(10)

    assert process.returncode in (0, -signal.SIGTERM)
    assert GRACE_S - 0.5 <= exited <= GRACE_S + EXIT_MARGIN_S, exited
    # the stream kept going during the grace, then ended properly
    assert any(at > sigterm + 0.5 and '"content":"' in data for at, data in events)
    assert [data for _, data in events[-2:]][1] == "[DONE]"
    assert error_codes(events) == ["server_shutting_down"]
    assert error_codes(events[-2:-1]) == ["server_shutting_down"]
    # the non-streamed request in flight got a 503 in OpenAI's shape, not a dropped connection
    assert plain[0].status_code == 503
    assert plain[0].json()["error"]["code"] == "server_shutting_down"
    assert plain[0].headers["retry-after"] == "1"


@contextmanager
def draining_server(app: FastAPI, config: GatewayConfig) -> Iterator[tuple[DrainingServer, str]]:
    port = free_port()
    server = DrainingServer(server_config(app, config, host="127.0.0.1", port=port,
                                          log_level="warning"), state_of(app).drain)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.01)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_stream_that_finishes_within_the_grace_is_not_cut() -> None:
    engine = ScriptedEngine(reply="one two three four five six seven eight", delta_delay_s=0.1)
    config = make_config(drain_grace_s=10)
    app = create_app(config, engine=engine)
    events: list[tuple[float, str]] = []
    first_content = threading.Event()
    with draining_server(app, config) as (server, url):
        streamer = threading.Thread(target=read_stream, args=(
            f"{url}/v1/chat/completions",
            {"model": ENSEMBLE, "messages": MESSAGES, "stream": True}, events, first_content))
        streamer.start()
        assert first_content.wait(10)
        server.should_exit = True  # = SIGTERM
        streamer.join(20)
    texts = [json.loads(d)["choices"][0]["delta"].get("content", "")
             for _, d in events if d.startswith('{"id"') and json.loads(d)["choices"]]
    assert "".join(texts) == "one two three four five six seven eight 0"
    assert error_codes(events) == []
    assert events[-1][1] == "[DONE]"
    assert state_of(app).drain.draining


def test_a_plain_request_past_the_grace_gets_503_and_its_work_is_cancelled() -> None:
    engine = ScriptedEngine(complete_delay_s=30)
    config = make_config(drain_grace_s=0.5)
    app = create_app(config, engine=engine)
    answers: list[httpx.Response] = []
    with draining_server(app, config) as (server, url):
        waiter = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{url}/v1/chat/completions", json={"model": ENSEMBLE, "messages": MESSAGES},
            timeout=30)))
        waiter.start()
        while not engine.requests:
            time.sleep(0.01)
        stopped = time.monotonic()
        server.should_exit = True
        waiter.join(20)
        took = time.monotonic() - stopped
    assert answers[0].status_code == 503
    assert set(answers[0].json()["error"]) == {"message", "type", "param", "code"}
    assert answers[0].json()["error"]["code"] == "server_shutting_down"
    assert engine.cancelled.is_set()
    assert took < 5
