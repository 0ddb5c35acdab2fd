"""Errors raised by the ensemble library.

    BlendError
    ├── ConfigError              bad YAML/config; raised only at start-up
    ├── RequestError             the caller's fault (HTTP 400)
    │   ├── UnknownModelError    model id not served (HTTP 404)
    │   └── InvalidParamsError   a parameter is out of range or wrongly typed (has .param)
    ├── BackendError             one upstream member failed (recorded, not raised, in a fan-out)
    │   ├── BackendTimeout
    │   ├── BackendConnectError
    │   ├── BackendStatusError   upstream answered an HTTP error (has .status)
    │   └── BackendProtocolError upstream answered something that is not OpenAI's shape
    ├── NoCandidatesError        fewer than min_candidates members answered (HTTP 502; .failures)
    │   └── DeadlineExceeded     the overall deadline passed first (HTTP 504)
    ├── OverloadedError          a bounded queue is full (HTTP 503)
    ├── RankerError              ranking model failed at run time (HTTP 500)
    └── FuserError               fusion model failed at run time (HTTP 500)
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
    def __init__(self, message: str, *, backend: str = "", status: int):
        super().__init__(message, backend=backend)
        self.status = status


class BackendProtocolError(BackendError):
    pass


class NoCandidatesError(BlendError):
    def __init__(self, message: str, failures: Sequence[MemberFailure] = ()):
        summary = "; ".join(f"{f.member}: {f.error_type}: {f.message}" for f in failures)
        super().__init__(f"{message} ({summary})" if summary else message)
        self.failures = tuple(failures)


class DeadlineExceeded(NoCandidatesError):
    pass


class OverloadedError(BlendError):
    def __init__(self, message: str = "Server overloaded, retry later.", retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RankerError(BlendError):
    pass


class FuserError(BlendError):
    pass
