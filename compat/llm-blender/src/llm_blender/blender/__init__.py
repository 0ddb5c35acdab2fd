"""``llm_blender.blender``: the original's package of the ``Blender`` class and its helpers."""
