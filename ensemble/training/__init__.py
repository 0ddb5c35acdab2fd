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
transformers.
"""
