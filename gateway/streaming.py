"""Server-sent events for streamed completions, and cancelling work the client left.

``to_chunks`` turns engine events into ``chat.completion.chunk`` models; ``open_stream``
sends any chunk iterator (chat, legacy completions, Responses events, ``/v1/fuse``) as SSE.

Stream discipline (as OpenAI and vLLM do it): each chunk is one ``data:`` line; an exception
inside the stream becomes ONE error event ``data: {"error": {...}}``; ``data: [DONE]`` is
always the last line.

Early errors keep their HTTP status: the response waits up to ``EARLY_ERROR_WAIT_S`` for the
first chunk, so an unknown model, bad parameters or members that fail at once (connection
refused) are answered 4xx/5xx. An ensemble that is still fanning out by then gets its headers
right away, with keep-alive comments every 15 s, so clients and proxies do not time out during
a long fan-out; a failure after that point is reported in-band.

When the client disconnects, sse-starlette cancels the body iterator; the pending chunk and the
chunk iterator are cancelled and closed, and through them the engine's generator, so upstream
calls stop. On SIGTERM, streams get ``server.drain_grace_s`` to finish; then the drain cuts them
the same way and they end with one error event and ``[DONE]`` (``gateway.drain``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from ensemble import plain_json
from ensemble.concurrency import aclose_shielded, cancel_and_wait
from ensemble.types import StreamEnd, TextDelta
from gateway.convert import to_blend_info, to_usage, with_experiment
from gateway.drain import DRAIN_MARGIN_S, Drain, request_cut
from gateway.errors import to_api_error
from gateway.protocol import (
    BlendExperiment,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChoiceDelta,
)
from gateway.state import gateway_state

logger = logging.getLogger(__name__)

T = TypeVar("T")
DONE = "[DONE]"
CLIENT_CLOSED = 499  # nginx's "client closed request", for metrics only
EARLY_ERROR_WAIT_S = 1.0


class ClientDisconnected(Exception):
    """The client hung up before the answer was ready; the work was cancelled."""


# --------------------------------------------------------------------------- chat chunks


@dataclass(frozen=True)
class ChunkHeader:
    """What every chunk of one streamed completion repeats."""

    id: str
    created: int
    model: str

    def chunk(self, choices: list[ChatCompletionChunkChoice], **fields: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices, **fields
        )

    def delta(
        self, index: int, delta: ChoiceDelta, finish: str | None = None,
        logprobs: Mapping[str, Any] | None = None,
    ) -> ChatCompletionChunk:
        choice = ChatCompletionChunkChoice(index=index, delta=delta, finish_reason=finish,
                                           logprobs=plain_json(logprobs) if logprobs else None)
        return self.chunk([choice])


async def to_chunks(
    events: AsyncIterator[TextDelta | StreamEnd],
    header: ChunkHeader,
    *,
    include_usage: bool,
    include_report: bool,
    on_end: Callable[[StreamEnd], None],
    experiment: BlendExperiment | None = None,
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Engine events -> ``chat.completion.chunk`` models, OpenAI's way.

    Each choice opens with a role chunk and closes with an empty delta carrying
    ``finish_reason``. After all choices, one chunk with no choices carries the usage (when
    ``include_usage``) and the ``blend`` report (when asked for, or when an experiment arm
    served). Closing this iterator closes
    ``events``, so the engine stops generating.
    """
    opened: set[int] = set()
    try:
        async for event in events:
            if isinstance(event, StreamEnd):
                on_end(event)
                blend = with_experiment(
                    to_blend_info(event.report) if include_report and event.report else None,
                    experiment)
                if include_usage or blend is not None:
                    usage = to_usage(event.usage) if include_usage else None
                    yield header.chunk([], usage=usage, blend=blend)
                return
            if event.index not in opened:
                opened.add(event.index)
                yield header.delta(event.index, ChoiceDelta(role="assistant", content=""))
            if not event.empty:
                delta = ChoiceDelta(
                    content=event.text or None, refusal=event.refusal,
                    tool_calls=[plain_json(t) for t in event.tool_calls] or None)
                yield header.delta(event.index, delta, logprobs=event.logprobs)
            if event.finish_reason is not None:
                yield header.delta(event.index, ChoiceDelta(), event.finish_reason)
    finally:
        await aclose_shielded(events)


# --------------------------------------------------------------------------- SSE


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and raising ``ClientDisconnected``) if the client leaves,
    or (raising ``ServerShuttingDown``, a 503) when the SIGTERM drain's grace is over.

    Call this only once the request body has been read: it consumes ``receive`` messages.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        with request_cut(_drain(request)) as cut:
            return await cut.step(task)
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()


async def open_stream(
    request: Request,
    chunks: AsyncGenerator[BaseModel, None],
    on_done: Callable[[int], None],
    *,
    early_error_wait_s: float = EARLY_ERROR_WAIT_S,
) -> EventSourceResponse:
    """An SSE response for ``chunks``. Raises instead if they fail within the wait.

    ``on_done(status)`` is called when the stream ends: 200, the status of the error that cut
    it short, or 499 when the client went away.
    """
    first = asyncio.ensure_future(_next_or_none(chunks))
    try:
        await cancel_on_disconnect(request, asyncio.wait({first}, timeout=early_error_wait_s))
    except BaseException:
        await _discard(first, chunks)
        raise
    if first.done() and first.exception() is not None:
        await _discard(first, chunks)
        first.result()  # raises the early error
    drain = _drain(request)
    return EventSourceResponse(
        _events(first, chunks, on_done, drain),
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # sse-starlette cancels streams (no error event, no [DONE]) once the server stops,
        # after this grace; the drain ends them properly first (gateway/drain.py)
        shutdown_grace_period=drain.grace_s + DRAIN_MARGIN_S if drain is not None else 0,
    )


def _drain(request: Request) -> Drain | None:
    state = gateway_state(request.app)  # None: an app create_app did not build (no drain)
    return state.drain if state is not None else None


async def _next_or_none(items: AsyncIterator[T]) -> T | None:
    try:
        return await anext(items)
    except StopAsyncIteration:
        return None


async def _discard(first: asyncio.Future[BaseModel | None], rest: AsyncGenerator[BaseModel, None]) -> None:
    """Cancel the pending first chunk, wait until it has stopped, then close the iterator."""
    await cancel_and_wait([first])
    await aclose_shielded(rest)


async def _events(
    first: asyncio.Future[BaseModel | None],
    rest: AsyncGenerator[BaseModel, None],
    on_done: Callable[[int], None],
    drain: Drain | None,
) -> AsyncIterator[ServerSentEvent]:
    status = 200
    try:
        with request_cut(drain) as cut:  # the drain deadline raises ServerShuttingDown here
            head = await cut.step(first)
            if head is not None:
                yield _data(head.model_dump_json())
                while (chunk := await cut.step(anext(rest, None))) is not None:
                    yield _data(chunk.model_dump_json())
    except (asyncio.CancelledError, GeneratorExit):
        status = CLIENT_CLOSED
        raise
    except Exception as exc:  # every failure becomes one error event
        error = to_api_error(exc)
        status = error.status
        if error.info.code == "internal_error":
            logger.exception("internal error while streaming")
        else:
            logger.warning("stream ended by %s: %s", type(exc).__name__, exc)
        yield _data(json.dumps(error.body()))
    finally:
        await _discard(first, rest)
        on_done(status)
    yield _data(DONE)


def _data(payload: str) -> ServerSentEvent:
    return ServerSentEvent(data=payload)
