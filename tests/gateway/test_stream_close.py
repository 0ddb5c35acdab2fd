"""Every stream wrapper closes its upstream even when it is closed from a cancelled task.

A client hang-up cancels the request through an anyio cancel scope, which re-delivers the
cancellation at every ``await`` inside it, ``finally`` blocks included. A wrapper that closes
its source with a plain ``await source.aclose()`` is then interrupted inside the source's own
cleanup (closing the upstream HTTP response), and the upstream keeps generating. Each wrapper
must close through ``ensemble.concurrency.aclose_shielded``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from ensemble.types import BlendRequest, ChatMessage, StreamEnd, TextDelta
from gateway.completions import to_completion_chunks
from gateway.experiments import StreamRecorder
from gateway.fusing import fuse_chunks
from gateway.responses.convert import ResponseFrame
from gateway.responses.protocol import ResponsesRequest
from gateway.responses.streaming import to_events
from gateway.routes import on_first_token
from gateway.streaming import ChunkHeader, to_chunks

Wrap = Callable[[AsyncIterator[Any]], AsyncGenerator[Any, None]]


def _ignore(_: StreamEnd) -> None:
    return None


def _recorder(events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    request = BlendRequest(model="m", messages=(ChatMessage(role="user", content="hi"),))
    recorder = StreamRecorder(None, "id", request, None)  # type: ignore[arg-type]  # never records: no StreamEnd
    return recorder.follow(events)  # type: ignore[no-any-return]


WRAPPERS: dict[str, Wrap] = {
    "chat.completion.chunk": lambda events: to_chunks(
        events, ChunkHeader("id", 1, "m"), include_usage=False, include_report=False,
        on_end=_ignore),
    "text_completion": lambda events: to_completion_chunks(
        events, completion_id="id", created=1, model="m", include_usage=False, on_end=_ignore),
    "responses": lambda events: to_events(
        events, ResponseFrame(ResponsesRequest(model="m", input="hi"), "m"), on_end=_ignore),
    "fuse": fuse_chunks,
    "experiment recorder": _recorder,
    "first token": lambda events: on_first_token(events, lambda: None),
}


class Upstream:
    """A source whose cleanup awaits (as closing an HTTP response does)."""

    def __init__(self) -> None:
        self.started = False
        self.closed = False

    async def events(self) -> AsyncGenerator[TextDelta | StreamEnd, None]:
        self.started = True
        try:
            while True:
                yield TextDelta(text="tok")
        finally:
            await anyio.lowlevel.checkpoint()  # interrupted here unless the close is shielded
            self.closed = True


@pytest.mark.parametrize("name", sorted(WRAPPERS))
async def test_closing_in_a_cancelled_scope_closes_the_upstream(name: str) -> None:
    upstream = Upstream()
    wrapper = WRAPPERS[name](upstream.events())
    with anyio.CancelScope() as scope:
        while not upstream.started:  # a wrapper may send its own events first
            await anext(wrapper)
        await anext(wrapper)  # well inside the stream, the wrapper paused at a yield
        scope.cancel()  # the client hung up
        await wrapper.aclose()
    assert upstream.closed, f"{name} left its upstream open"


async def test_an_unshielded_close_is_caught() -> None:
    """The check above can fail: a wrapper closing its source plainly leaves it open."""
    async def unshielded(events: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    upstream = Upstream()
    wrapper = unshielded(upstream.events())
    with anyio.CancelScope() as scope:
        await anext(wrapper)
        scope.cancel()
        await wrapper.aclose()
    assert not upstream.closed
