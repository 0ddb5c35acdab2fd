"""``type: remote`` fuser: another blendgate's streamed ``POST /v1/fuse`` (its ``fuse_service``).

Wire (see ``gateway/fusing.py`` for the serving side): the request carries the messages, the
top candidates (best first) and the sampling parameters; the answer is server-sent events,
one ``{"text", "finish_reason", "usage"}`` object per delta, then ``data: [DONE]``. The
``X-Blendgate-Fuser`` header names the fuser that actually produces the text (GenFuser or its
fallback), which becomes ``FuseStream.fuser`` and so the report's ``fuser``.

Errors are an in-process fuser's: an HTTP error before the stream -> ``FuserError``
(``OverloadedError`` for a 503); an error event or a stream cut before ``[DONE]`` ->
``FuserError`` from the deltas. ``timeout_s`` bounds the wait for the answer's headers and
between events. ``on_error: top_candidate`` answers with the best candidate when the remote
fuser cannot start. Closing the deltas closes the connection, which stops the remote fuse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from typing import Any

import httpx

from ensemble.backends.openai_compat import sse_data
from ensemble.backends.openai_wire import error_message
from ensemble.config import RemoteFuserConfig
from ensemble.errors import FuserError, OverloadedError
from ensemble.fusers.select import SelectFuser
from ensemble.remote import mapped_errors, service_client, service_error
from ensemble.types import ChatMessage, FuseStream, SamplingParams, TextDelta, Usage

logger = logging.getLogger(__name__)

FUSER_HEADER = "X-Blendgate-Fuser"


class RemoteFuser:
    """Fuses through another blendgate; see the module docstring."""

    def __init__(self, cfg: RemoteFuserConfig) -> None:
        self.name = f"remote:{cfg.base}"
        self.cfg = cfg
        self._client = service_client(cfg)
        self._select = SelectFuser()

    async def fuse(
        self,
        messages: Sequence[ChatMessage],
        candidates: Sequence[str],
        params: SamplingParams,
    ) -> FuseStream:
        if not candidates:
            raise FuserError(f"{self.name}: no candidates to fuse")
        try:
            response = await self._open(messages, candidates, params)
        except (FuserError, OverloadedError) as exc:
            if self.cfg.on_error == "fail":
                raise
            logger.warning("remote fuser failed, answering with the top candidate: %s", exc)
            return await self._select.fuse(messages, candidates, params)
        fuser = response.headers.get(FUSER_HEADER, self.name)
        return FuseStream(fuser=fuser, deltas=self._deltas(response))

    async def _open(
        self, messages: Sequence[ChatMessage], candidates: Sequence[str], params: SamplingParams
    ) -> httpx.Response:
        body = {
            "messages": [{"role": m.role, "content": m.content,
                          **({"name": m.name} if m.name else {})} for m in messages],
            "candidates": list(candidates),
            "params": sampling_to_wire(params),
        }
        request = self._client.build_request("POST", "/v1/fuse", json=body)
        with mapped_errors(self.name, FuserError):
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                try:
                    text = (await response.aread()).decode("utf-8", "replace")
                finally:
                    await response.aclose()
                raise service_error(self.name, FuserError, response, text)
        return response

    async def _deltas(self, response: httpx.Response) -> AsyncIterator[TextDelta]:
        done = False
        try:
            with mapped_errors(self.name, FuserError):
                async for data in sse_data(response.aiter_lines()):
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    yield _delta(self.name, json.loads(data))
        finally:
            await response.aclose()
        if not done:
            raise FuserError(f"{self.name}: stream ended before [DONE]")

    async def aclose(self) -> None:
        await self._client.aclose()


def sampling_to_wire(params: SamplingParams) -> dict[str, Any]:
    """``SamplingParams`` as JSON (``stop`` as a list); ``None`` fields are left out."""
    out = {k: v for k, v in asdict(params).items() if v not in (None, (), {})}
    if "stop" in out:
        out["stop"] = list(out["stop"])
    return out


def _delta(who: str, data: Any) -> TextDelta:
    if not isinstance(data, dict):
        raise FuserError(f"{who}: malformed event {str(data)[:100]!r}")
    if "error" in data:
        raise FuserError(f"{who}: {error_message(data, 'error event')}")
    text = data.get("text")
    if not isinstance(text, str):
        raise FuserError(f"{who}: event without text: {str(data)[:100]!r}")
    usage = data.get("usage")
    return TextDelta(
        text=text,
        finish_reason=data.get("finish_reason"),
        usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        if isinstance(usage, dict) else None,
    )
