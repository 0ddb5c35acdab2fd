"""blendgate's ensemble library: backends, fan-out, rankers, fusers, the ``BlendEngine`` that
serves them and the ``Blender`` API.

This module is the library's front door: an application (blendgate's own ``gateway/``
included) imports names from here, or from one of these public submodules, and from nowhere
deeper (tests/test_architecture.py holds the gateway to it):

* ``ensemble.config``: the config schema, one model per section, and its loaders;
* ``ensemble.errors``: every error the library raises;
* ``ensemble.types``: requests, results, stream events and reports;
* ``ensemble.concurrency``: the async helpers (shielded close, gather-or-cancel);
* ``ensemble.experiments``: the A/B runtime and ``blendgate eval``;
* ``ensemble.ray_serve``: the Ray Serve model deployments (needs the ``ray`` extra).
"""

# The documented public submodules (see above); anything else is internal.
PUBLIC_SUBMODULES = ("concurrency", "config", "errors", "experiments", "ray_serve", "types")

from ensemble.backends.factory import with_default_max_tokens
from ensemble.backends.openai_wire import merge_tool_call_deltas, plain_json
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
from ensemble.fanout import QUORUM_CUT
from ensemble.fusers.base import Fuser
from ensemble.preflight import check_resources, find_problems
from ensemble.rankers.base import Ranker
from ensemble.structured import schema_error
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
    "PUBLIC_SUBMODULES",
    "QUORUM_CUT",
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
    "Fuser",
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
    "Ranker",
    "RankerError",
    "Ranking",
    "RequestError",
    "SamplingParams",
    "StreamEnd",
    "TextDelta",
    "UnknownModelError",
    "Usage",
    "check_resources",
    "find_problems",
    "load_config",
    "member_labels",
    "merge_tool_call_deltas",
    "parse_config",
    "plain_json",
    "schema_error",
    "with_default_max_tokens",
]

# Public names whose modules import torch: loaded on first attribute access, so that
# ``import ensemble`` stays light (no torch, no transformers).
_LAZY = {"Blender": "ensemble.compat.blender"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ensemble' has no attribute {name!r}")
