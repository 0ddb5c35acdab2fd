"""Wire <-> domain: OpenAI request models to ``BlendRequest``, engine results to responses.

The only module that imports both ``gateway.protocol`` and ``ensemble``. Requests are checked
against the server limits here (``n``, candidates per request, ``max_tokens``); anything a
client can get wrong raises ``InvalidParamsError`` with the offending ``param``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ensemble import plain_json, schema_error
from ensemble.config import EnsembleModelConfig
from ensemble.errors import InvalidParamsError
from ensemble.types import (
    BlendReport,
    BlendRequest,
    BlendResult,
    ChatMessage,
    SamplingParams,
    ServedModel,
    Usage,
)
from gateway.config import GatewayConfig
from gateway.protocol import (
    BlendCandidate,
    BlendExperiment,
    BlendFailure,
    BlendInfo,
    BlendTimings,
    BlendUsage,
    ChatCompletionChoice,
    ChatCompletionMessage,
    ChatCompletionMessageParam,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionUsage,
    ModelCard,
    ModelList,
    NamedToolChoice,
)

_UNSUPPORTED_PARTS = {
    "image_url": "image",
    "input_audio": "audio",
    "file": "file",
}


@dataclass(frozen=True)
class RequestLimits:
    """Server limits applied to every chat request."""

    max_n: int
    max_candidates: int
    max_tokens_limit: int | None = None
    allow_return_candidates: bool = True  # server.allow_return_candidates
    # Candidates one choice costs, per served model (sum of members' samples; 1 otherwise).
    samples: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RequestLimits:
        samples = {
            m.id: sum(member.samples for member in m.members)
            for m in config.models
            if isinstance(m, EnsembleModelConfig)
        }
        server = config.server
        return cls(server.max_n, server.max_candidates, server.max_tokens_limit,
                   server.allow_return_candidates, samples)


# --------------------------------------------------------------------------- requests


def to_blend_request(request: ChatCompletionRequest, limits: RequestLimits) -> BlendRequest:
    _check_output_controls(request)
    if request.n > limits.max_n:
        raise InvalidParamsError(
            f"n={request.n} is above this server's limit of {limits.max_n}.", param="n"
        )
    candidates = limits.samples.get(request.model, 1) * request.n
    if candidates > limits.max_candidates:
        raise InvalidParamsError(
            f"n={request.n} asks model `{request.model}` for {candidates} candidates; "
            f"this server allows {limits.max_candidates} per request.",
            param="n",
        )
    return BlendRequest(
        model=request.model,
        messages=tuple(_to_message(m, i) for i, m in enumerate(request.messages)),
        params=_to_params(request, limits.max_tokens_limit),
        n=request.n,
        return_candidates=bool(limits.allow_return_candidates and request.blend
                               and request.blend.return_candidates),
    )


def _check_output_controls(request: ChatCompletionRequest) -> None:
    """Tools, tool_choice, response_format and logprobs make sense together (as OpenAI checks)."""
    names: set[str] = set()
    for i, tool in enumerate(request.tools or ()):
        function = tool.function
        if function.name in names:
            raise InvalidParamsError(f"Duplicate tool name '{function.name}'.",
                                     param=f"tools[{i}].function.name")
        names.add(function.name)
        if function.parameters is not None and (why := schema_error(function.parameters)):
            raise InvalidParamsError(f"Invalid JSON Schema for tool '{function.name}': {why}",
                                     param=f"tools[{i}].function.parameters")
    choice = request.tool_choice
    if choice is not None and not request.tools and choice != "none":
        raise InvalidParamsError("tool_choice is only allowed when tools are specified.",
                                 param="tool_choice")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise InvalidParamsError(f"tool_choice names '{choice.function.name}', which is not "
                                 "one of the tools.", param="tool_choice.function.name")
    response_format = request.response_format
    if response_format is not None and response_format.type == "json_schema":
        spec = response_format.json_schema
        if spec is None or spec.schema_ is None:
            raise InvalidParamsError("response_format of type 'json_schema' needs "
                                     "json_schema.schema.", param="response_format.json_schema")
        if why := schema_error(spec.schema_):
            raise InvalidParamsError(f"Invalid JSON Schema in response_format: {why}",
                                     param="response_format.json_schema.schema")
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidParamsError("top_logprobs needs logprobs set to true.",
                                 param="top_logprobs")


def _to_message(message: ChatCompletionMessageParam, index: int) -> ChatMessage:
    content = message.content
    if message.role == "tool" and not message.tool_call_id:
        raise InvalidParamsError("A message of role 'tool' needs tool_call_id.",
                                 param=f"messages[{index}].tool_call_id")
    calls = tuple(c.model_dump(exclude_none=True) for c in message.tool_calls or ())
    for j, call in enumerate(calls):
        try:
            json.loads(call["function"]["arguments"])
        except json.JSONDecodeError as exc:
            raise InvalidParamsError(
                f"Tool call arguments are not JSON: {exc.msg} at character {exc.pos}.",
                param=f"messages[{index}].tool_calls[{j}].function.arguments") from exc
    if content is None:
        if message.role != "assistant":
            raise InvalidParamsError(
                f"Message of role '{message.role}' needs content.",
                param=f"messages[{index}].content",
            )
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "".join(_part_text(part.type, part.text, index, j) for j, part in enumerate(content))
    return ChatMessage(role=message.role, content=text, name=message.name, tool_calls=calls,
                       tool_call_id=message.tool_call_id)


def _part_text(kind: str, text: str | None, index: int, part: int) -> str:
    param = f"messages[{index}].content[{part}]"
    if kind == "text":
        if text is None:
            raise InvalidParamsError("A text content part needs 'text'.", param=param)
        return text
    what = _UNSUPPORTED_PARTS.get(kind, f"'{kind}'")
    raise InvalidParamsError(
        f"{what} content parts are not supported: blendgate's members read text only.",
        param=param,
    )


def _to_params(request: ChatCompletionRequest, max_tokens_limit: int | None) -> SamplingParams:
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens_limit is not None:
        max_tokens = min(max_tokens or max_tokens_limit, max_tokens_limit)
    stop = request.stop
    extra: dict[str, Any] = {
        key: value
        for key in ("top_k", "min_p", "repetition_penalty")
        if (value := getattr(request, key)) is not None
    }
    return SamplingParams(
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=max_tokens,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        logit_bias=request.logit_bias,
        tools=tuple(t.model_dump(exclude_none=True) for t in request.tools or ()),
        tool_choice=(request.tool_choice.model_dump() if isinstance(request.tool_choice,
                     NamedToolChoice) else request.tool_choice),
        parallel_tool_calls=request.parallel_tool_calls,
        response_format=(request.response_format.model_dump(by_alias=True, exclude_none=True)
                         if request.response_format is not None else None),
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs,
        extra=extra,
    )


# --------------------------------------------------------------------------- responses


def to_usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def to_blend_info(report: BlendReport) -> BlendInfo:
    ranking = report.ranking
    candidates = [
        BlendCandidate(
            member=c.member,
            sample=c.sample,
            text=c.text,
            score=ranking.scores[i] if ranking else None,
            rank=ranking.ranks[i] if ranking else None,
            latency_s=c.latency_s,
            finish_reason=c.finish_reason,
            tool_calls=[dict(t) for t in c.tool_calls] or None,
        )
        for i, c in enumerate(report.candidates)
    ]
    failures = [
        BlendFailure(member=f.member, error=f.message, type=f.error_type, latency_s=f.latency_s)
        for f in report.failures
    ]
    t = report.timings
    timings = BlendTimings(fanout_s=t.fanout_s, rank_s=t.rank_s, fuse_s=t.fuse_s,
                           total_s=t.total_s)
    usage = [
        BlendUsage(stage=part.stage, name=part.name, prompt_tokens=part.usage.prompt_tokens,
                   completion_tokens=part.usage.completion_tokens,
                   total_tokens=part.usage.total_tokens)
        for part in report.usage
    ]
    return BlendInfo(candidates=candidates, failures=failures, fuser=report.fuser,
                     timings=timings, usage=usage)


def to_chat_completion(
    result: BlendResult, *, completion_id: str, created: int, include_report: bool,
    experiment: BlendExperiment | None = None,
) -> ChatCompletionResponse:
    choices = [
        ChatCompletionChoice(
            index=c.index,
            message=ChatCompletionMessage(
                # OpenAI sends null content with a call-only answer; clients test for it.
                content=c.text if c.text or not c.tool_calls else None,
                refusal=c.refusal,
                tool_calls=[plain_json(t) for t in c.tool_calls] or None,
            ),
            finish_reason=c.finish_reason,
            logprobs=plain_json(c.logprobs) if c.logprobs else None,
        )
        for c in result.choices
    ]
    blend = with_experiment(
        to_blend_info(result.report) if include_report and result.report else None, experiment)
    return ChatCompletionResponse(
        id=completion_id, created=created, model=result.model, choices=choices,
        usage=to_usage(result.usage), blend=blend,
    )


def with_experiment(blend: BlendInfo | None,
                    experiment: BlendExperiment | None) -> BlendInfo | None:
    """``blend`` with the serving experiment arm added (a bare one when there is no report)."""
    if experiment is None:
        return blend
    return (blend or BlendInfo()).model_copy(update={"experiment": experiment})


def to_model_list(models: list[ServedModel], created: int) -> ModelList:
    return ModelList(
        data=[
            ModelCard(id=m.id, created=created, kind=m.kind, members=list(m.members))
            for m in models
        ]
    )
