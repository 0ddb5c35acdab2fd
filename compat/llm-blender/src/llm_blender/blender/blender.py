"""``llm_blender.blender.blender.Blender``: the original's module path of ``Blender``."""

from ensemble.compat import Blender

__all__ = ["Blender"]
