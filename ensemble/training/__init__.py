"""Training blendgate's own models: the PairRM ranker and the GenFuser fuser.

- ``examples.py``: :class:`RankingExample`, one source with scored candidates (a preference
  pair is two candidates scored 1 and 0).
- ``preference_sets.py``: loaders for chosen/rejected JSONL, MixInstruct JSONL and the local
  preference sets (hh_rlhf, PandaLM, RewardBench, Auto-J, HHH).
- ``sampling.py``, ``objective.py``: LLM-Blender's pair sampling and "instructgpt" loss.
- ``ranker_data.py``: token rows for the trainer; ``ranker_backbone.py``: a PairRM to train
  (an existing checkpoint, or an encoder with a new head) and its saved layout;
  ``ranker_trainer.py``: ``blendgate train-ranker`` on transformers' ``Trainer``.
- ``fuser_data.py``, ``fuser_trainer.py``: ``blendgate train-fuser`` (GenFuser, seq2seq).
- ``callbacks.py``: the metrics log and the CPU-time budget shared by both trainers.
- ``export.py``: ``blendgate export-preferences`` (the experiment store -> preference pairs).

Importing ``ensemble.training`` itself imports nothing heavy; the trainers import torch and
transformers. The commands' entry points are its public names (loaded on first access):
``TrainRankerOptions`` / ``train_ranker``, ``TrainFuserOptions`` / ``train_fuser`` and
``export_preferences``.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__all__ = [
    "TrainFuserOptions",
    "TrainRankerOptions",
    "export_preferences",
    "train_fuser",
    "train_ranker",
]

if TYPE_CHECKING:
    from ensemble.training.export import export_preferences
    from ensemble.training.fuser_trainer import TrainFuserOptions, train_fuser
    from ensemble.training.ranker_trainer import TrainRankerOptions, train_ranker

# name -> its module: imported on first access, so that the CLI starts without torch.
_LAZY = {
    "TrainRankerOptions": "ranker_trainer",
    "train_ranker": "ranker_trainer",
    "TrainFuserOptions": "fuser_trainer",
    "train_fuser": "fuser_trainer",
    "export_preferences": "export",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(f"ensemble.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ensemble.training' has no attribute {name!r}")
