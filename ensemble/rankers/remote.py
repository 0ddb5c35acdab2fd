"""``type: remote`` ranker: another blendgate's ``POST /v1/rank`` (its ``rank_service``).

The request carries the chat messages and the candidates; the serving side turns them into
PairRM's source exactly as an in-process ranker would (same ``chat_prompt``), so the ranks
equal the in-process ones. The whole call is bounded by ``timeout_s``.

``on_error`` decides what a failure (refused after the connect retries, timeout, HTTP error,
malformed answer) does: ``fail`` raises ``RankerError`` (``OverloadedError`` for a 503), the
errors an in-process ranker raises; ``keep_order`` logs it and returns every candidate tied
(score 0, rank 1), so the fuser gets the members' order and the chat request still answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ensemble.config import RemoteRankerConfig
from ensemble.errors import OverloadedError, RankerError
from ensemble.remote import mapped_errors, service_client, service_error
from ensemble.types import ChatMessage, Ranking

logger = logging.getLogger(__name__)


class _RankAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = ""
    scores: list[float]
    ranks: list[int]


class RemoteRanker:
    """Ranks through another blendgate; see the module docstring."""

    def __init__(self, cfg: RemoteRankerConfig) -> None:
        self.name = f"remote:{cfg.base}"
        self.cfg = cfg
        self._client = service_client(cfg)

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        try:
            return await asyncio.wait_for(self._rank(messages, candidates), self.cfg.timeout_s)
        except TimeoutError:
            failure: RankerError | OverloadedError = RankerError(
                f"{self.name}: no answer within {self.cfg.timeout_s:g}s")
        except (RankerError, OverloadedError) as exc:
            failure = exc
        if self.cfg.on_error == "fail":
            raise failure
        logger.warning("remote ranker failed, keeping the members' order: %s", failure)
        return Ranking(scores=(0.0,) * len(candidates), ranks=(1,) * len(candidates))

    async def _rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        body: dict[str, Any] = {
            "messages": [_wire_message(m) for m in messages],
            "candidates": list(candidates),
        }
        with mapped_errors(self.name, RankerError):
            response = await self._client.post("/v1/rank", json=body)
            if response.status_code >= 400:
                raise service_error(self.name, RankerError, response, response.text)
            try:
                answer = _RankAnswer.model_validate_json(response.content)
            except ValidationError as exc:
                raise RankerError(f"{self.name}: malformed ranking: {exc.errors()[0]['msg']}"
                                  ) from exc
        if len(answer.ranks) != len(candidates) or len(answer.scores) != len(candidates):
            raise RankerError(f"{self.name} ranked {len(answer.ranks)} of {len(candidates)} "
                              f"candidates")
        return Ranking(scores=tuple(answer.scores), ranks=tuple(answer.ranks))

    async def aclose(self) -> None:
        await self._client.aclose()


def _wire_message(message: ChatMessage) -> dict[str, str]:
    out = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    return out
