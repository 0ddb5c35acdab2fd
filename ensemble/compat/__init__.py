"""LLM-Blender's library API on blendgate's models: ``Blender`` (ranking, comparison, best-of-n)
and its fusion calls. Importing a submodule imports torch; this package itself does not.

- :mod:`.blender`: ``Blender``, the original's ranking API on blendgate's PairRM;
- :mod:`.fusion`: ``loadfuser``, ``fuse``, ``rank_and_fuse`` and the batch fuse they run on.

The names the ``llm_blender`` drop-in (``compat/llm-blender``) re-exports are read from here,
loaded on first access: ``Blender``, ``get_topk_candidates_from_ranks`` and
``DebertaV2PairRM`` (PairRM as a transformers ``PreTrainedModel``).
"""

from __future__ import annotations

import importlib

# name -> the module that defines it; imported on first attribute access (torch is heavy).
DROP_IN = {
    "Blender": "ensemble.compat.blender",
    "get_topk_candidates_from_ranks": "ensemble.fusers.topk",
    "DebertaV2PairRM": "ensemble.rankers.pairrm.hf_model",
}

__all__ = ["DROP_IN", "Blender", "DebertaV2PairRM", "get_topk_candidates_from_ranks"]


def __getattr__(name: str) -> object:
    if name in DROP_IN:
        return getattr(importlib.import_module(DROP_IN[name]), name)
    raise AttributeError(f"module 'ensemble.compat' has no attribute {name!r}")
