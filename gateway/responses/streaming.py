"""Engine events -> the Responses API's streamed events, in OpenAI's order: ``response.created``,
``response.in_progress``, the message's ``output_item.added`` / ``content_part.added`` /
``output_text.delta`` ..., its ``.done`` events, each function call as a whole item, then
``response.completed``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from ensemble import merge_tool_call_deltas
from ensemble.concurrency import aclose_shielded
from ensemble.types import StreamEnd, TextDelta
from gateway.responses.convert import ResponseFrame
from gateway.responses.protocol import ResponseEvent


async def to_events(
    events: AsyncIterator[TextDelta | StreamEnd],
    frame: ResponseFrame,
    on_end: Callable[[StreamEnd], None],
) -> AsyncGenerator[ResponseEvent, None]:
    """Engine events (choice 0) -> the Responses API's streamed events, in OpenAI's order."""
    number = 0

    def event(kind: str, **fields: Any) -> ResponseEvent:
        nonlocal number
        number += 1
        return ResponseEvent(type=kind, sequence_number=number - 1, **fields)

    text: list[str] = []
    calls: list[Any] = []
    opened = False
    yield event("response.created", response=frame.response("in_progress", []))
    yield event("response.in_progress", response=frame.response("in_progress", []))
    try:
        async for item in events:
            if isinstance(item, StreamEnd):
                on_end(item)
                whole_calls = merge_tool_call_deltas(calls)
                async for closing in _close_items(event, frame, text, whole_calls, opened):
                    yield closing
                output = frame.output("".join(text), whole_calls)
                yield event("response.completed",
                            response=frame.response("completed", output, item.usage))
                return
            if item.index != 0:
                continue
            calls.extend(item.tool_calls)
            if item.text:
                if not opened:
                    opened = True
                    yield event("response.output_item.added", output_index=0,
                                item=frame.message("", "in_progress"))
                    yield event("response.content_part.added", item_id=frame.message_id,
                                output_index=0, content_index=0,
                                part={"type": "output_text", "text": "", "annotations": []})
                text.append(item.text)
                yield event("response.output_text.delta", item_id=frame.message_id,
                            output_index=0, content_index=0, delta=item.text, logprobs=[])
    finally:
        await aclose_shielded(events)


async def _close_items(
    event: Callable[..., ResponseEvent], frame: ResponseFrame, text: list[str],
    calls: Sequence[Any], opened: bool,
) -> AsyncIterator[ResponseEvent]:
    """The ``.done`` events of the message, then each function call as a whole item."""
    index = 0
    if opened:
        whole = "".join(text)
        part = {"type": "output_text", "text": whole, "annotations": []}
        yield event("response.output_text.done", item_id=frame.message_id, output_index=0,
                    content_index=0, text=whole, logprobs=[])
        yield event("response.content_part.done", item_id=frame.message_id, output_index=0,
                    content_index=0, part=part)
        yield event("response.output_item.done", output_index=0, item=frame.message(whole))
        index = 1
    for i, call in enumerate(calls):
        item = frame.function_call(call, i)
        yield event("response.output_item.added", output_index=index + i,
                    item={**item, "arguments": "", "status": "in_progress"})
        yield event("response.function_call_arguments.delta", item_id=item["id"],
                    output_index=index + i, delta=item["arguments"])
        yield event("response.function_call_arguments.done", item_id=item["id"],
                    output_index=index + i, arguments=item["arguments"])
        yield event("response.output_item.done", output_index=index + i, item=item)
