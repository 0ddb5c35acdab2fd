"""SIGTERM drain: requests in flight get ``server.drain_grace_s``, then the server stops.

uvicorn's ``should_exit`` is what its SIGTERM handler sets; the app is a bare Starlette one
with a slow route, served with ``gateway.cli.server_config`` (what ``blendgate serve`` uses).
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.cli import server_config
from gateway.config import parse_config
from tests.gateway.conftest import free_port


def _serve(
    seconds: float, grace_s: float, arrived: threading.Event
) -> tuple[uvicorn.Server, threading.Thread, str]:
    async def slow(request: Request) -> Response:
        arrived.set()
        await asyncio.sleep(seconds)
        return PlainTextResponse("done")

    config = parse_config({"backends": {}, "server": {"drain_grace_s": grace_s}})
    port = free_port()
    app = Starlette(routes=[Route("/slow", slow)])
    server = uvicorn.Server(server_config(app, config, host="127.0.0.1", port=port,  # type: ignore[arg-type]
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}/slow"


def _request_then_stop(seconds: float, grace_s: float) -> tuple[object, float]:
    arrived = threading.Event()
    server, thread, url = _serve(seconds, grace_s, arrived)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(url, timeout=30).text)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    client = threading.Thread(target=call)
    client.start()
    assert arrived.wait(timeout=10)  # the request is in flight
    stopped = time.perf_counter()
    server.should_exit = True  # = SIGTERM
    thread.join(timeout=30)
    client.join(timeout=30)
    return outcome[0], time.perf_counter() - stopped


def test_request_in_flight_finishes_within_the_grace() -> None:
    outcome, _ = _request_then_stop(seconds=1.0, grace_s=10)
    assert outcome == "done"


def test_server_stops_after_the_grace() -> None:
    outcome, took = _request_then_stop(seconds=20.0, grace_s=0.5)
    assert outcome != "done"  # cut at the grace (a 500 or a dropped connection), not served
    assert took < 5
