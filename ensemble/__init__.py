"""blendgate's ensemble library: backends, fan-out, rankers, fusers, the ``BlendEngine`` that
serves them and the ``Blender`` API."""

from ensemble.builder import member_labels
from ensemble.config import BlendgateConfig, load_config, parse_config
from ensemble.engine import BlendEngine
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
from ensemble.types import (
    BlendReport,
    BlendRequest,
    BlendResult,
    Candidate,
    ChatMessage,
    Choice,
    Completion,
    MemberFailure,
    Ranking,
    SamplingParams,
    StreamEnd,
    TextDelta,
    Usage,
)

__all__ = [
    "BackendConnectError",
    "BackendError",
    "BackendProtocolError",
    "BackendStatusError",
    "BackendTimeout",
    "BlendEngine",
    "BlendError",
    "BlendReport",
    "BlendRequest",
    "BlendResult",
    "Blender",
    "BlendgateConfig",
    "Candidate",
    "ChatMessage",
    "Choice",
    "Completion",
    "ConfigError",
    "DeadlineExceeded",
    "FuserError",
    "FuserRejected",
    "FuserTimeout",
    "FuserUpstreamError",
    "InvalidParamsError",
    "MemberFailure",
    "MembersRejected",
    "MembersTimedOut",
    "NoCandidatesError",
    "OverloadedError",
    "RankerError",
    "Ranking",
    "RequestError",
    "SamplingParams",
    "StreamEnd",
    "TextDelta",
    "UnknownModelError",
    "Usage",
    "load_config",
    "member_labels",
    "parse_config",
]

# Public names whose modules import torch: loaded on first attribute access, so that
# ``import ensemble`` stays light (no torch, no transformers).
_LAZY = {"Blender": "ensemble.compat.blender"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
