"""Typed configuration, loaded from YAML and validated once at start-up.

``load_config(path)`` -> :class:`BlendgateConfig`. Each component receives only its own
sub-model (``PairRMRankerConfig``, ``LLMFuserConfig``...), never the whole tree. One module
per section: ``backends``, ``rankers``, ``fusers``, ``models`` (ensembles, singles, members,
tasks, tools), ``experiments``, ``store``; ``remote`` is the client settings remote rankers
and fusers share. ``blendgate`` is the whole tree, ``references`` its checks that names refer
to each other, ``loading`` YAML -> config, ``errors`` pydantic errors -> readable messages.
"""

from ensemble.config.backends import (
    BackendConfig,
    ChunkedModelConfig,
    LocalBackendConfig,
    ModelReference,
    OpenAIBackendConfig,
)
from ensemble.config.base import Device, DType, StrictModel
from ensemble.config.blendgate import BlendgateConfig
from ensemble.config.errors import readable_errors
from ensemble.config.experiments import ArmConfig, ExperimentConfig, ShadowConfig
from ensemble.config.fusers import (
    FuserConfig,
    GenFuserConfig,
    LLMFuserConfig,
    RemoteFuserConfig,
    SelectFuserConfig,
    llm_fuser,
)
from ensemble.config.loading import GATEWAY_SECTIONS, load_config, parse_config
from ensemble.config.models import (
    EnsembleModelConfig,
    MemberConfig,
    ModelConfig,
    SingleModelConfig,
    TaskRoutingConfig,
    ToolPolicyConfig,
)
from ensemble.config.rankers import (
    ConsensusRankerConfig,
    LLMJudgeRankerConfig,
    NoRankerConfig,
    PairRMRankerConfig,
    RankerConfig,
    RemoteRankerConfig,
    RewardModelRankerConfig,
    ranker_backends,
)
from ensemble.config.references import model_backends
from ensemble.config.remote import RemoteServiceConfig
from ensemble.config.store import StoreConfig

__all__ = [
    "GATEWAY_SECTIONS",
    "ArmConfig",
    "BackendConfig",
    "BlendgateConfig",
    "ChunkedModelConfig",
    "ConsensusRankerConfig",
    "DType",
    "Device",
    "EnsembleModelConfig",
    "ExperimentConfig",
    "FuserConfig",
    "GenFuserConfig",
    "LLMFuserConfig",
    "LLMJudgeRankerConfig",
    "LocalBackendConfig",
    "MemberConfig",
    "ModelConfig",
    "ModelReference",
    "NoRankerConfig",
    "OpenAIBackendConfig",
    "PairRMRankerConfig",
    "RankerConfig",
    "RemoteFuserConfig",
    "RemoteRankerConfig",
    "RemoteServiceConfig",
    "RewardModelRankerConfig",
    "SelectFuserConfig",
    "ShadowConfig",
    "SingleModelConfig",
    "StoreConfig",
    "StrictModel",
    "TaskRoutingConfig",
    "ToolPolicyConfig",
    "llm_fuser",
    "load_config",
    "model_backends",
    "parse_config",
    "ranker_backends",
    "readable_errors",
]
