"""``POST /v1/embeddings``, passed through to the backend of that name (``embeddings: true``).

So LangChain's ``OpenAIEmbeddings`` and Open WebUI's RAG work against the same base URL as
chat. The body is checked (OpenAI's fields and types), passed on with the backend's model
name, and the upstream's answer is relayed with ``model`` set to the id the client asked for.
A keys-file key's budget applies: the input reserves about a token per byte and settles to
the upstream's ``usage.prompt_tokens``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from ensemble.types import Usage
from gateway.auth import STATE_KEY
from gateway.deps import MetricsDep, parse_body, require_api_key
from gateway.metrics import STATE_MODEL
from gateway.protocol import OpenAIBaseModel
from gateway.state import state_of
from gateway.streaming import cancel_on_disconnect

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


class EmbeddingRequest(OpenAIBaseModel):
    model: str
    # one text, several texts, or token ids (one list or several)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @model_validator(mode="after")
    def _check_input(self) -> EmbeddingRequest:
        items = [self.input] if isinstance(self.input, str) else self.input
        if not items or any(item in ("", []) for item in items):
            raise ValueError("'input' must not be empty, nor hold an empty item")
        if len(items) > MAX_INPUTS:
            raise ValueError(f"'input' has {len(items)} items; at most {MAX_INPUTS} are allowed")
        return self

    def size(self) -> int:
        """About the input's tokens, from above: bytes of text, count of token ids."""
        items = [self.input] if isinstance(self.input, str) else self.input
        return sum(len(i.encode()) if isinstance(i, str) else
                   len(i) if isinstance(i, list) else 1 for i in items)


async def get_embedding_body(request: Request) -> EmbeddingRequest:
    return await parse_body(request, EmbeddingRequest)


@router.post("/embeddings")
async def create_embeddings(
    request: Request, body: Annotated[EmbeddingRequest, Depends(get_embedding_body)],
    metrics: MetricsDep,
) -> Response:
    setattr(request.state, STATE_MODEL, body.model)
    state = state_of(request.app)
    backend = state.embeddings.get(body.model)
    budgets = state.budgets
    key = getattr(request.state, STATE_KEY, None)
    reservation = budgets.reserve(key, body.size(), body.model) if key is not None else None
    usage = Usage()
    try:
        answer = await cancel_on_disconnect(
            request, backend.embed(body.model_dump(exclude_none=True)))
        reported = answer.get("usage")
        tokens = reported.get("prompt_tokens") if isinstance(reported, dict) else None
        usage = Usage(prompt_tokens=tokens if isinstance(tokens, int) else 0)
    finally:
        if reservation is not None:
            budgets.settle(reservation, usage)
    metrics.observe_usage(body.model, usage)
    return JSONResponse({**answer, "model": body.model})
