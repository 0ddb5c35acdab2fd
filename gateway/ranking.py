"""PairRM as a service: ``POST /v1/rank`` and ``POST /v1/compare``.

Both use the engine's service ranker (``rank_service`` in the config, else the first
ensemble's ranker that is a model). A ``none`` ranker ranks nothing, so without a model both
routes answer 501 ``ranker_not_configured``. Requests give either ``prompt`` (a raw source string, LLM-Blender's
``inputs``) or ``messages`` (OpenAI chat messages; see
``ensemble.rankers.pairrm.inputs.chat_prompt`` for how they become PairRM's source).

Examples::

    curl -s localhost:8000/v1/rank -H "Authorization: Bearer $KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{"prompt": "hello, how are you!",
           "candidates": ["get out!", "hi! I am fine, thanks!", "bye!"]}'
    # {"object": "ranking", "model": "pairrm:llm-blender/PairRM-hf",
    #  "scores": [...], "ranks": [3, 1, 2]}          (higher score / lower rank = better)

    curl -s localhost:8000/v1/compare -H "Authorization: Bearer $KEY" \\
      -H 'Content-Type: application/json' \\
      -d '{"prompt": "hello!", "a": "hi!", "b": "f**k off!"}'
    # {"object": "comparison", "model": "...",
    #  "logit_ab": ..., "prob_ab": ...,     A on the left:  > 0 / > 0.5 means A better
    #  "logit_ba": ..., "prob_ba": ...,     B on the left:  > 0 / > 0.5 means B better
    #  "logit": ..., "probability": ...,    combined: logit_ab - logit_ba (Blender.compare's
    #  "a_better": true}                    default mode); probability = P(A better) =
    #                                       sigmoid(logit / 2), the mean of both orders

``/v1/compare`` with a ranker that has no pairwise ``compare`` (a reward model) reports only
the combined fields: logit = score(A) - score(B), probability = sigmoid(logit). Errors use OpenAI's body
``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field, model_validator

from ensemble import Ranker
from ensemble.errors import InvalidParamsError
from ensemble.types import ChatMessage
from gateway.deps import (
    EngineDep,
    body_of,
    body_with_candidates,
    require_api_key,
    top_level_candidates,
)
from gateway.errors import APIError
from gateway.protocol import ChatCompletionMessageParam, OpenAIBaseModel

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


# --------------------------------------------------------------------------- wire models


class PromptRequest(OpenAIBaseModel):
    model: str | None = Field(None, description="Ignored; the service ranker answers.")
    prompt: str | None = Field(None, description="Raw source text (instruction + input).")
    messages: list[ChatCompletionMessageParam] | None = Field(
        None, description="Chat history ending with the user turn the candidates answer.")

    @model_validator(mode="after")
    def _one_source(self) -> PromptRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self


class RankRequest(PromptRequest):
    candidates: list[str] = Field(min_length=1)


class RankResponse(BaseModel):
    object: Literal["ranking"] = "ranking"
    model: str
    scores: list[float]
    ranks: list[int]


class CompareRequest(PromptRequest):
    a: str
    b: str


class CompareResponse(BaseModel):
    object: Literal["comparison"] = "comparison"
    model: str
    logit_ab: float | None = None
    prob_ab: float | None = None
    logit_ba: float | None = None
    prob_ba: float | None = None
    logit: float
    probability: float
    a_better: bool


# --------------------------------------------------------------------------- helpers


async def _service_ranker(engine: EngineDep) -> Ranker:
    ranker = engine.service_ranker()
    if ranker is None:
        raise APIError(501, "No ranking model is configured on this server (set rank_service).",
                       type="invalid_request_error", code="ranker_not_configured")
    return ranker


def chat_messages(body: PromptRequest) -> list[ChatMessage]:
    if body.prompt is not None:
        return [ChatMessage(role="user", content=body.prompt)]
    out = []
    for index, m in enumerate(body.messages or []):
        if m.content is None or isinstance(m.content, str):
            out.append(ChatMessage(role=m.role, content=m.content or ""))
            continue
        texts = []
        for j, part in enumerate(m.content):
            if part.type != "text" or getattr(part, "text", None) is None:
                raise InvalidParamsError("Only text content parts can be ranked.",
                                         param=f"messages[{index}].content[{j}]")
            texts.append(str(part.text))
        out.append(ChatMessage(role=m.role, content="".join(texts)))
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


RankBody = Annotated[RankRequest, Depends(
    body_with_candidates(RankRequest, "ranked", top_level_candidates))]
CompareBody = Annotated[CompareRequest, Depends(body_of(CompareRequest))]
ServiceRanker = Annotated[Ranker, Depends(_service_ranker)]


# --------------------------------------------------------------------------- routes


@router.post("/rank", response_model=RankResponse)
async def rank(body: RankBody, ranker: ServiceRanker) -> Response:
    ranking = await ranker.rank(chat_messages(body), body.candidates)
    out = RankResponse(model=ranker.name, scores=list(ranking.scores), ranks=list(ranking.ranks))
    return Response(out.model_dump_json(), media_type="application/json")


@router.post("/compare", response_model=CompareResponse)
async def compare(body: CompareBody, ranker: ServiceRanker) -> Response:
    messages = chat_messages(body)
    pairwise = getattr(ranker, "compare", None)
    if pairwise is not None:
        both = await pairwise(messages, body.a, body.b)
        out = CompareResponse(
            model=ranker.name, logit_ab=both.logit_ab, prob_ab=_sigmoid(both.logit_ab),
            logit_ba=both.logit_ba, prob_ba=_sigmoid(both.logit_ba), logit=both.combined,
            probability=_sigmoid(both.combined / 2), a_better=both.combined > 0,
        )
    else:
        scores = (await ranker.rank(messages, [body.a, body.b])).scores
        logit = scores[0] - scores[1]
        out = CompareResponse(model=ranker.name, logit=logit, probability=_sigmoid(logit),
                              a_better=logit > 0)
    return Response(out.model_dump_json(), media_type="application/json")


# --------------------------------------------------------------------------- batched ranking

MAX_BATCH_ITEMS = 64


class RankBatchRequest(OpenAIBaseModel):
    """Several rankings in one request (``POST /v1/rank/batch``): each item as ``/v1/rank``'s
    body. They run concurrently, so a batching ranker (PairRM) pools all their pairs."""

    model: str | None = Field(None, description="Ignored; the service ranker answers.")
    items: list[RankRequest] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class RankedItem(BaseModel):
    scores: list[float]
    ranks: list[int]


class RankBatchResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[RankedItem]  # in the order of the request's items


def _item_candidates(body: RankBatchRequest) -> list[tuple[str, list[str]]]:
    return [(f"items[{i}].candidates", item.candidates) for i, item in enumerate(body.items)]


RankBatchBody = Annotated[RankBatchRequest, Depends(
    body_with_candidates(RankBatchRequest, "ranked", _item_candidates))]


@router.post("/rank/batch", response_model=RankBatchResponse)
async def rank_batch(body: RankBatchBody, ranker: ServiceRanker) -> Response:
    rankings = await asyncio.gather(
        *(ranker.rank(chat_messages(item), item.candidates) for item in body.items))
    out = RankBatchResponse(model=ranker.name, data=[
        RankedItem(scores=list(r.scores), ranks=list(r.ranks)) for r in rankings])
    return Response(out.model_dump_json(), media_type="application/json")
