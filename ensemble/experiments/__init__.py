"""A/B testing of served models: experiments (sticky weighted splits), shadow runs judged by a
ranker, human feedback, an SQL store of every event, and the statistics over them.

Small modules, one idea each:

* ``split``: which arm serves a user (a hash of the stickiness key, weighted).
* ``events``: the frozen records that go to the store.
* ``store``: SQLAlchemy (async) + Alembic migrations; writes batched off the request path.
* ``judge``: a pairwise verdict (win / tie / loss) from any ranker, both orders averaged.
* ``shadow``: a bounded queue of shadow runs; full means dropped and counted, never waited on.
* ``stats``: Wilson intervals and the anytime-valid confidence sequence behind "enough evidence".
* ``runtime``: what the gateway holds: the experiments in force (reloadable), the store, shadows.

Nothing here imports the HTTP layer.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ensemble.experiments.events import KeyUsageEvent
from ensemble.experiments.runtime import (
    Assignment,
    ExperimentRuntime,
    Served,
    StoreDisabledError,
    StoreUnavailable,
    UnknownCompletionError,
)

__all__ = [
    "Assignment",
    "EvalOptions",
    "ExperimentRuntime",
    "KeyUsageEvent",
    "Served",
    "StoreDisabledError",
    "StoreUnavailable",
    "UnknownCompletionError",
    "parse_sweep",
    "pool_lines",
    "run_eval",
    "summary_lines",
]

if TYPE_CHECKING:
    from ensemble.experiments.evaluation.command import EvalOptions, summary_lines
    from ensemble.experiments.evaluation.command import run as run_eval
    from ensemble.experiments.evaluation.pool_command import pool_lines
    from ensemble.experiments.evaluation.pool_sweep import parse_sweep

# `blendgate eval` draws plots (matplotlib): loaded on first access, not with the runtime.
# name -> (module under evaluation/, its name there)
_EVALUATION = {
    "EvalOptions": ("command", "EvalOptions"),
    "run_eval": ("command", "run"),
    "summary_lines": ("command", "summary_lines"),
    "pool_lines": ("pool_command", "pool_lines"),
    "parse_sweep": ("pool_sweep", "parse_sweep"),
}


def __getattr__(name: str) -> object:
    if name in _EVALUATION:
        module, attr = _EVALUATION[name]
        return getattr(import_module(f"ensemble.experiments.evaluation.{module}"), attr)
    raise AttributeError(f"module 'ensemble.experiments' has no attribute {name!r}")
