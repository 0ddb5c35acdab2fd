"""Every failure the gateway reports, as an HTTP status plus OpenAI's error body.

``APIError`` is the one exception the HTTP layer renders. Library errors are translated by
``from_blend_error`` through a single table keyed by ``BlendError`` class and looked up along the
exception's MRO, so a new subclass inherits its parent's status until it gets its own row.
Anything that is not a ``BlendError`` is a bug: ``internal_error`` hides its text from the
client (the caller logs it with its stack). A bare ``ValueError`` is never reported as 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ensemble.errors import (
    BackendConnectError,
    BackendError,
    BackendProtocolError,
    BackendStatusError,
    BackendTimeout,
    BlendError,
    ConfigError,
    DeadlineExceeded,
    FuserError,
    FuserRejected,
    FuserTimeout,
    FuserUpstreamError,
    InvalidParamsError,
    MembersRejected,
    MembersTimedOut,
    NoCandidatesError,
    OverloadedError,
    RankerError,
    RequestError,
    UnknownModelError,
)
from gateway.protocol import ErrorInfo, ErrorResponse


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    code: str | None = None
    # False: retrying cannot succeed. Sent as ``x-should-retry: false``, which the openai SDKs
    # obey before their own rule (they retry 408, 409, 429 and every 5xx).
    retry: bool = True


INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
RATE_LIMIT = "rate_limit_error"

# Most specific class first is not required: lookup walks the exception's MRO. README.md's
# error table has one row per entry; keep them in step.
ERROR_TABLE: dict[type[BlendError], ErrorKind] = {
    BlendError: ErrorKind(500, SERVER_ERROR, "internal_error"),
    ConfigError: ErrorKind(500, SERVER_ERROR, "config_error", retry=False),
    RequestError: ErrorKind(400, INVALID_REQUEST),
    UnknownModelError: ErrorKind(404, INVALID_REQUEST, "model_not_found"),
    InvalidParamsError: ErrorKind(400, INVALID_REQUEST, "invalid_value"),
    BackendError: ErrorKind(502, SERVER_ERROR, "upstream_error"),
    BackendTimeout: ErrorKind(504, SERVER_ERROR, "upstream_timeout"),
    BackendConnectError: ErrorKind(502, SERVER_ERROR, "upstream_error"),
    BackendProtocolError: ErrorKind(502, SERVER_ERROR, "upstream_error"),
    BackendStatusError: ErrorKind(502, SERVER_ERROR, "upstream_error"),  # 4xx: see _relayed
    NoCandidatesError: ErrorKind(502, SERVER_ERROR, "all_members_failed"),
    DeadlineExceeded: ErrorKind(504, SERVER_ERROR, "deadline_exceeded"),
    MembersTimedOut: ErrorKind(504, SERVER_ERROR, "members_timed_out"),
    MembersRejected: ErrorKind(400, INVALID_REQUEST, "members_rejected"),  # .status relayed
    OverloadedError: ErrorKind(503, SERVER_ERROR, "overloaded"),
    RankerError: ErrorKind(500, SERVER_ERROR, "ranker_failed"),
    FuserError: ErrorKind(500, SERVER_ERROR, "fuser_failed"),
    FuserUpstreamError: ErrorKind(502, SERVER_ERROR, "fuser_upstream_error"),
    FuserTimeout: ErrorKind(504, SERVER_ERROR, "fuser_timeout"),
    FuserRejected: ErrorKind(502, SERVER_ERROR, "fuser_rejected", retry=False),
}

# Upstream 4xx statuses a pass-through model relays as they are: the request itself is at
# fault (400 context length, 413 too large, 422 invalid) or the upstream is rate-limited (429).
# Any other 4xx (401/403 bad upstream key, 404 unknown upstream model, ...) is the gateway's
# configuration at fault: 502, not retried.
RELAYED_STATUSES = frozenset({400, 413, 422, 429})


class APIError(Exception):
    """An error response: status, OpenAI error body and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.info = ErrorInfo(message=message, type=type, param=param, code=code)
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return ErrorResponse(error=self.info).model_dump()


def lookup(exc: BlendError) -> ErrorKind:
    for cls in type(exc).__mro__:
        kind = ERROR_TABLE.get(cls)
        if kind is not None:
            return kind
    raise AssertionError("BlendError is in the table")  # pragma: no cover


def from_blend_error(exc: BlendError) -> APIError:
    kind = _relayed(exc) or lookup(exc)
    param = code = None
    if isinstance(exc, RequestError):
        param, code = exc.param, exc.code
    message = str(exc)
    if isinstance(exc, BackendStatusError) and kind.status in RELAYED_STATUSES:
        message = exc.detail  # the upstream's own words, e.g. its context-length message
    headers = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, int(exc.retry_after_s)))
    if not kind.retry:
        headers["x-should-retry"] = "false"
    return APIError(
        kind.status, message, type=kind.type, param=param, code=code or kind.code,
        headers=headers,
    )


def _relayed(exc: BlendError) -> ErrorKind | None:
    """The kind of an upstream 4xx: relayed as is (see ``RELAYED_STATUSES``) or 502 that
    must not be retried. None for every other error (the table decides)."""
    if isinstance(exc, MembersRejected):
        status = exc.status if exc.status in RELAYED_STATUSES else 400
        return ErrorKind(status, INVALID_REQUEST, "members_rejected", retry=False)
    if not isinstance(exc, BackendStatusError) or not 400 <= exc.status < 500:
        return None
    if exc.status == 429:
        return ErrorKind(429, RATE_LIMIT, "upstream_rate_limited")
    if exc.status in RELAYED_STATUSES:
        return ErrorKind(exc.status, INVALID_REQUEST, "upstream_rejected", retry=False)
    if exc.rejected:
        return ErrorKind(502, SERVER_ERROR, "upstream_rejected", retry=False)
    return None


def internal_error() -> APIError:
    return APIError(500, "Internal server error.", type=SERVER_ERROR, code="internal_error")


def to_api_error(exc: BaseException) -> APIError:
    """The response for any exception (``internal_error`` for anything unexpected)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, BlendError):
        return from_blend_error(exc)
    return internal_error()


# --------------------------------------------------------------------------- validation

_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "literal"})


def param_path(loc: tuple[int | str, ...]) -> str | None:
    """``("messages", 0, "role")`` -> ``"messages[0].role"``.

    Stops at pydantic's union/type tags (``"str"``, ``"list[str]"``, ``"ContentPart"``), which
    are not fields of the request.
    """
    path = ""
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
            continue
        if item in _TYPE_TAGS or not item.isidentifier() or not item.islower():
            break
        path += f".{item}" if path else item
    return path or None


def from_validation_error(exc: ValidationError) -> APIError:
    """The first problem of an invalid request body, as OpenAI words it."""
    error: ErrorDetails = exc.errors(include_url=False)[0]
    param = param_path(error["loc"])
    if error["type"] == "json_invalid":
        message = (
            "We could not parse the JSON body of your request: "
            f"{error['msg']}. The body must be a JSON object."
        )
        return APIError(400, message, code="invalid_json")
    if error["type"] == "model_type" and not error["loc"]:
        return APIError(400, "The request body must be a JSON object.", code="invalid_json")
    if error["type"] == "missing":
        return APIError(400, f"Missing required parameter: '{param}'.", param=param,
                        code="missing_required_parameter")
    more = exc.error_count() - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    text = error["msg"]
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        text = str(error["ctx"]["error"])  # our validator's own words, without "Value error, "
    message = f"Invalid value for '{param}': {text}.{suffix}" if param else text + suffix
    return APIError(400, message, param=param, code="invalid_value")
