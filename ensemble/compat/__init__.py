"""LLM-Blender's library API on blendgate's models: ``Blender`` (ranking, comparison, best-of-n)
and its fusion calls. Importing a submodule imports torch; this package itself does not.

- :mod:`.blender`: ``Blender``, the original's ranking API on blendgate's PairRM;
- :mod:`.fusion`: ``loadfuser``, ``fuse``, ``rank_and_fuse`` and the batch fuse they run on.
"""
