"""Errors raised by the ensemble library.

    BlendError
    ├── ConfigError              bad YAML/config; raised only at start-up
    ├── RequestError             the caller's fault (HTTP 400)
    │   ├── UnknownModelError    model id not served (HTTP 404)
    │   └── InvalidParamsError   a parameter is out of range or wrongly typed (has .param)
    ├── BackendError             one upstream member failed (recorded, not raised, in a fan-out)
    │   ├── BackendTimeout
    │   ├── BackendConnectError
    │   ├── BackendStatusError   upstream answered an HTTP error (.status, .detail); a 4xx is
    │   │                        the upstream rejecting the request itself (``.rejected``)
    │   └── BackendProtocolError upstream answered something that is not OpenAI's shape
    ├── NoCandidatesError        fewer than min_candidates members answered (HTTP 502; .failures)
    │   ├── DeadlineExceeded     the overall deadline passed first (HTTP 504)
    │   ├── MembersTimedOut      every member hit its own timeout (HTTP 504)
    │   └── MembersRejected      every member rejected the request with a 4xx (.status)
    ├── OverloadedError          a bounded queue is full (HTTP 503)
    ├── RankerError              ranking model failed at run time (HTTP 500)
    └── FuserError               in-process fusion model failed at run time (HTTP 500)
        └── FuserUpstreamError   the llm fuser's backend failed (HTTP 502; .cause)
            ├── FuserTimeout     ... by timing out (HTTP 504)
            └── FuserRejected    ... by rejecting the synthesis request with a 4xx
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ensemble.types import MemberFailure


class BlendError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigError(BlendError):
    def __init__(self, message: str, *, path: Path | str | None = None, key: str | None = None):
        where = ""
        if path is not None:
            where += f"{path}: "
        if key:
            where += f"{key}: "
        super().__init__(where + message)
        self.message = message  # without the path and key
        self.path = path
        self.key = key


class RequestError(BlendError):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


class UnknownModelError(RequestError):
    def __init__(self, model: str):
        super().__init__(f"The model `{model}` does not exist.", param="model", code="model_not_found")
        self.model = model


class InvalidParamsError(RequestError):
    pass


class BackendError(BlendError):
    def __init__(self, message: str, *, backend: str = ""):
        super().__init__(message)
        self.backend = backend


class BackendTimeout(BackendError):
    pass


class BackendConnectError(BackendError):
    pass


class BackendStatusError(BackendError):
    """``detail`` is the upstream's own error message (relayed to the client for a 4xx)."""

    def __init__(self, message: str, *, backend: str = "", status: int,
                 detail: str | None = None):
        super().__init__(message, backend=backend)
        self.status = status
        self.detail = detail if detail is not None else message

    @property
    def rejected(self) -> bool:
        """The upstream refused the request itself (4xx): retrying it cannot succeed, except
        after a timeout (408), a conflict (409) or a rate limit (429)."""
        return 400 <= self.status < 500 and self.status not in (408, 409, 429)


class BackendProtocolError(BackendError):
    pass


class NoCandidatesError(BlendError):
    def __init__(self, message: str, failures: Sequence[MemberFailure] = ()):
        summary = "; ".join(f"{f.member}: {f.error_type}: {f.message}" for f in failures)
        super().__init__(f"{message} ({summary})" if summary else message)
        self.failures = tuple(failures)


class DeadlineExceeded(NoCandidatesError):
    pass


class MembersTimedOut(NoCandidatesError):
    pass


class MembersRejected(NoCandidatesError):
    """Every member rejected the request (4xx). ``status``: theirs when they agree, else 400."""

    def __init__(self, message: str, failures: Sequence[MemberFailure] = (), *,
                 status: int = 400):
        super().__init__(message, failures)
        self.status = status


class OverloadedError(BlendError):
    def __init__(self, message: str = "Server overloaded, retry later.", retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RankerError(BlendError):
    pass


class FuserError(BlendError):
    pass


class FuserUpstreamError(FuserError):
    """The llm fuser's backend failed; ``cause`` is its ``BackendError``."""

    def __init__(self, message: str, cause: BackendError):
        super().__init__(message)
        self.cause = cause


class FuserTimeout(FuserUpstreamError):
    pass


class FuserRejected(FuserUpstreamError):
    pass


def fuser_upstream_error(message: str, cause: BackendError) -> FuserUpstreamError:
    """The ``FuserUpstreamError`` subclass that says how the fuser's backend failed."""
    if isinstance(cause, BackendTimeout):
        return FuserTimeout(message, cause)
    if isinstance(cause, BackendStatusError) and cause.rejected:
        return FuserRejected(message, cause)
    return FuserUpstreamError(message, cause)
