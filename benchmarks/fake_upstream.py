"""A minimal, instant OpenAI-compatible chat server: the upstream for bench_gateway.py.

Raw ASGI on uvicorn (no framework), so that the upstream adds as little as possible to what
is measured. ``POST /v1/chat/completions`` answers a fixed text with ``usage``, ``n`` choices,
and server-sent events when ``stream`` is true (role chunk, content, finish, usage when
``stream_options.include_usage``, ``[DONE]``). ``GET /v1/models`` and ``GET /health`` answer
too.

A model name ending in ``-delay-<ms>`` (``fake-delay-30``) sleeps that many milliseconds
before answering: the ensemble benchmark gives its members different latencies that way.

    python benchmarks/fake_upstream.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REPLY = "The quick brown fox jumps over the lazy dog. " * 4
REPLY_TOKENS = 40
PROMPT_TOKENS = 12
_DELAY = re.compile(r"-delay-(\d+)$")
_JSON = [(b"content-type", b"application/json")]


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _send_json(send: Send, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    headers = [*_JSON, (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _usage(n: int) -> dict[str, int]:
    completion = REPLY_TOKENS * n
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion}


def _completion(model: str, n: int) -> dict[str, Any]:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": f"{REPLY}(sample {i})"},
         "finish_reason": "stop", "logprobs": None}
        for i in range(n)
    ]
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": _usage(n)}


async def _stream(send: Send, model: str, n: int, include_usage: bool) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"type": "http.response.body", "more_body": True,
                "body": b"data: " + json.dumps({**base, "choices": choices, **extra}).encode()
                + b"\n\n"}

    for i in range(n):
        await send(chunk([{"index": i, "delta": {"role": "assistant", "content": ""},
                           "finish_reason": None}]))
        await send(chunk([{"index": i, "delta": {"content": f"{REPLY}(sample {i})"},
                           "finish_reason": None}]))
        await send(chunk([{"index": i, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        await send(chunk([], usage=_usage(n)))
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _chat(receive: Receive, send: Send) -> None:
    try:
        request = json.loads(await _read_body(receive))
        model = str(request["model"])
        n = int(request.get("n") or 1)
    except (ValueError, KeyError, TypeError):
        await _send_json(send, 400, {"error": {"message": "bad request", "type": "invalid_request_error",
                                               "param": None, "code": None}})
        return
    delay = _DELAY.search(model)
    if delay:
        await asyncio.sleep(int(delay.group(1)) / 1000)
    if request.get("stream"):
        options = request.get("stream_options") or {}
        await _stream(send, model, n, bool(options.get("include_usage")))
    else:
        await _send_json(send, 200, _completion(model, n))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, method = scope["path"].rstrip("/"), scope["method"]
    if method == "POST" and path.endswith("/chat/completions"):
        await _chat(receive, send)
    elif method == "GET" and path.endswith("/models"):
        await _send_json(send, 200, {"object": "list", "data": [
            {"id": "fake", "object": "model", "created": 0, "owned_by": "bench"}]})
    elif method == "GET" and path == "/health":
        await _send_json(send, 200, {"status": "ok"})
    else:
        await _send_json(send, 404, {"error": {"message": f"no route {method} {path}",
                                               "type": "not_found", "param": None,
                                               "code": None}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
