"""Server-sent events for streamed chat completions, and cancelling work the client left.

Stream discipline (as OpenAI and vLLM do it): each chunk is one ``data:`` line; an exception
inside the stream becomes ONE error event ``data: {"error": {...}}``; ``data: [DONE]`` is
always the last line. The first chunk is fetched before the response starts, so a request that
fails up front (unknown model, every member down) still gets its proper HTTP status. When the
client disconnects, sse-starlette cancels the body iterator, which closes the chunk iterator
and through it the engine's generator, so upstream calls stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from gateway.errors import to_api_error

logger = logging.getLogger(__name__)

T = TypeVar("T")
DONE = "[DONE]"
CLIENT_CLOSED = 499  # nginx's "client closed request", for metrics only


class ClientDisconnected(Exception):
    """The client hung up before the answer was ready; the work was cancelled."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and raising ``ClientDisconnected``) if the client leaves.

    Call this only once the request body has been read: it consumes ``receive`` messages.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()


async def first_item(request: Request, items: AsyncGenerator[T, None]) -> T | None:
    """The first item, with errors raised here (before any byte is sent); None if empty."""
    try:
        return await cancel_on_disconnect(request, anext(items))
    except StopAsyncIteration:
        return None
    except BaseException:
        await items.aclose()
        raise


def event_stream(
    first: BaseModel | None,
    rest: AsyncGenerator[BaseModel, None],
    on_done: Callable[[int], None],
) -> EventSourceResponse:
    """An SSE response for ``first`` then ``rest``; ``on_done(status)`` is called at the end
    with 200, the status of the error that cut the stream short, or 499 on disconnect."""
    return EventSourceResponse(
        _events(first, rest, on_done),
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    first: BaseModel | None,
    rest: AsyncGenerator[BaseModel, None],
    on_done: Callable[[int], None],
) -> AsyncIterator[ServerSentEvent]:
    status = 200
    try:
        if first is not None:
            yield _data(first.model_dump_json())
        async for chunk in rest:
            yield _data(chunk.model_dump_json())
    except (asyncio.CancelledError, GeneratorExit):
        status = CLIENT_CLOSED
        raise
    except Exception as exc:
        error = to_api_error(exc)
        status = error.status
        if status >= 500 and error.info.code == "internal_error":
            logger.exception("internal error while streaming")
        else:
            logger.warning("stream ended by %s: %s", type(exc).__name__, exc)
        yield _data(json.dumps(error.body()))
    finally:
        await rest.aclose()
        on_done(status)
    yield _data(DONE)


def _data(payload: str) -> ServerSentEvent:
    return ServerSentEvent(data=payload)
