"""OpenAI wire models for the chat completions API (and blendgate's opt-in ``blend`` object).

Requests accept unknown fields (clients such as LibreChat and Open WebUI send keys we do not
use) and log which ones were ignored; responses copy OpenAI's field names exactly. This module
imports pydantic and nothing else from the project: the domain types live in ``ensemble`` and
``gateway.convert`` maps between the two.

Reference: https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)

logger = logging.getLogger(__name__)

Role = Literal["system", "developer", "user", "assistant", "tool"]


LOGGED_FIELDS = 8  # unknown field names logged per object, each cut to LOGGED_NAME_CHARS
LOGGED_NAME_CHARS = 64
INT32_MAX = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)


class OpenAIBaseModel(BaseModel):
    """Request base: unknown fields are kept, and logged once per request at INFO (a bounded
    line: the count, and the first few names cut short).

    Types are strict, as OpenAI's are: ``n: "2"`` or ``stream: "yes"`` is a 400, not coerced
    (an int is still accepted where a float is expected)."""

    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="wrap")
    @classmethod
    def _log_ignored_fields(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        result = handler(data)
        if isinstance(data, dict) and result.model_extra:
            logger.info("%s: %d ignored fields %s", cls.__name__, len(result.model_extra),
                        bounded_names(result.model_extra))
        return result


def bounded_names(names: Any) -> list[str]:
    """At most ``LOGGED_FIELDS`` names, each at most ``LOGGED_NAME_CHARS`` long (+ "...")."""
    shown = sorted(str(n) for n in names)[:LOGGED_FIELDS]
    return [n if len(n) <= LOGGED_NAME_CHARS else n[:LOGGED_NAME_CHARS] + "..." for n in shown]


class _WireModel(BaseModel):
    """Response base: fields named in ``omit_if_none`` are left out when they are None.

    OpenAI leaves ``usage`` off ordinary chunks and an unused ``delta.role`` off later ones;
    other null fields (``finish_reason``, ``logprobs``) are sent as null, as OpenAI does.
    """

    omit_if_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_nones(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if not (v is None and k in self.omit_if_none)}


# --------------------------------------------------------------------------- errors


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


# --------------------------------------------------------------------------- request


class ContentPart(OpenAIBaseModel):
    """One part of a list-valued message content. Only ``type="text"`` is served."""

    type: str
    text: str | None = None


class FunctionCall(OpenAIBaseModel):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCallParam(OpenAIBaseModel):
    """A tool call of an earlier assistant turn, sent back in the history."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatCompletionMessageParam(OpenAIBaseModel):
    role: Role
    # A string or a list of parts; None only for assistant turns that carried tool calls.
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallParam] | None = None


class StreamOptions(OpenAIBaseModel):
    include_usage: bool = False


FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's rule for function names


class FunctionDefinition(OpenAIBaseModel):
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema (checked in gateway.convert)
    strict: bool | None = None


class ChatCompletionTool(OpenAIBaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class JSONSchemaFormat(OpenAIBaseModel):
    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    description: str | None = None
    schema_: Annotated[dict[str, Any] | None, Field(alias="schema")] = None
    strict: bool | None = None


class ResponseFormat(OpenAIBaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class BlendOptions(BaseModel):
    """blendgate's own request options, sent by the openai SDK as ``extra_body={"blend": ...}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    return_candidates: bool = False


class NamedFunction(OpenAIBaseModel):
    name: str


class NamedToolChoice(OpenAIBaseModel):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(OpenAIBaseModel):
    """Fields in the order of OpenAI's reference; blendgate/vLLM extras after them."""

    messages: Annotated[list[ChatCompletionMessageParam], Field(min_length=1)]
    model: str
    audio: dict[str, Any] | None = None
    frequency_penalty: Annotated[float | None, Field(ge=-2.0, le=2.0)] = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: Annotated[int | None, Field(ge=1, le=INT32_MAX)] = None
    max_tokens: Annotated[int | None, Field(ge=1, le=INT32_MAX)] = None  # deprecated alias
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    n: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    parallel_tool_calls: bool | None = None
    presence_penalty: Annotated[float | None, Field(ge=-2.0, le=2.0)] = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    seed: Annotated[int | None, Field(ge=INT64[0], le=INT64[1])] = None
    service_tier: str | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float | None, Field(ge=0.0, le=2.0)] = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[ChatCompletionTool] | None = None
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None
    top_p: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    user: str | None = None

    # vLLM / llama.cpp sampling extras, passed through to members.
    top_k: Annotated[int | None, Field(ge=-1, le=INT32_MAX)] = Field(
        None, description="Sample from the k most likely tokens.")
    min_p: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    repetition_penalty: Annotated[float | None, Field(gt=0.0)] = None

    # blendgate.
    blend: BlendOptions | None = Field(None, description="Opt-in ensemble transparency.")


# --------------------------------------------------------------------------- response


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionMessage(_WireModel):
    omit_if_none = frozenset({"tool_calls"})

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class BlendCandidate(_WireModel):
    omit_if_none = frozenset({"tool_calls"})

    member: str
    sample: int
    text: str
    tool_calls: list[dict[str, Any]] | None = None
    score: float | None
    rank: int | None
    latency_s: float
    finish_reason: str | None


class BlendFailure(BaseModel):
    member: str
    error: str
    type: str
    latency_s: float


class BlendUsage(BaseModel):
    """Tokens of one part of an ensemble answer; the parts sum to the response's ``usage``."""

    stage: Literal["member", "fuser"]
    name: str  # member label, or the fuser that answered
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class BlendTimings(BaseModel):
    fanout_s: float
    rank_s: float
    fuse_s: float
    total_s: float


class BlendPath(BaseModel):
    """Which way the adaptive policy answered (``ensemble.types.PathReport``)."""

    path: str  # fused | skip_fusion | cascade | hedged | vote
    stage: int  # 0-based; the ensemble's own members are the last stage
    fused: bool  # whether the fuser ran
    reason: str
    margin: float | None = None
    agreement: float | None = None
    early_stop: bool = False
    escalated: list[str] = Field(default_factory=list)  # why earlier stages did not answer


class BlendExperiment(BaseModel):
    """The experiment arm that served a request to an experiment id."""

    id: str
    arm: str
    model: str


class BlendInfo(BaseModel):
    """What the ensemble did: every candidate with score and rank, failures, fuser, timings;
    and, for a request to an experiment, the arm that served it (always sent)."""

    candidates: list[BlendCandidate] = Field(default_factory=list)
    failures: list[BlendFailure] = Field(default_factory=list)
    fuser: str | None = None
    timings: BlendTimings | None = None
    usage: list[BlendUsage] = Field(default_factory=list)  # the response's usage, per part
    path: BlendPath | None = None  # the adaptive policy's decision
    experiment: BlendExperiment | None = None
    backend: str | None = None  # a single model with fallbacks: the backend that answered


class ChatCompletionResponse(_WireModel):
    omit_if_none = frozenset({"blend"})

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None
    blend: BlendInfo | None = None


class ChoiceDelta(_WireModel):
    omit_if_none = frozenset({"role", "content", "tool_calls", "refusal"})

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(_WireModel):
    omit_if_none = frozenset({"usage", "blend"})

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
    blend: BlendInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "blendgate"
    # blendgate: "ensemble" or "single", and the member backends behind the id.
    kind: str
    members: list[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
