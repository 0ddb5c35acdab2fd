"""LLM-Blender's GenFuser (a fine-tuned Flan-T5-XL) for blendgate.

- :mod:`.prompt`: the exact input template and tokenisation (pure functions);
- :mod:`.model`: checkpoint lookup and loading;
- :mod:`.generate`: batched generation with per-row streaming and stop;
- :mod:`.fuser`: :class:`GenFuser`, the gateway's fuser;
- the original library calls (``fuse``, ``rank_and_fuse``, ``loadfuser``) are in :mod:`ensemble.compat.fusion`.

Importing this package imports torch and transformers.
"""

from ensemble.fusers.genfuser.fuser import GenFuser

__all__ = ["GenFuser"]
