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

from typing import TYPE_CHECKING

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
    "Served",
    "StoreDisabledError",
    "StoreUnavailable",
    "UnknownCompletionError",
    "run_eval",
    "summary_lines",
]

if TYPE_CHECKING:
    from ensemble.experiments.evaluation.command import EvalOptions, summary_lines
    from ensemble.experiments.evaluation.command import run as run_eval

# `blendgate eval` draws plots (matplotlib): loaded on first access, not with the runtime.
_EVALUATION = {"EvalOptions": "EvalOptions", "run_eval": "run", "summary_lines": "summary_lines"}


def __getattr__(name: str) -> object:
    if name in _EVALUATION:
        from ensemble.experiments.evaluation import command

        return getattr(command, _EVALUATION[name])
    raise AttributeError(f"module 'ensemble.experiments' has no attribute {name!r}")
