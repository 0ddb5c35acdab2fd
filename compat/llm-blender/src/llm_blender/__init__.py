"""``llm_blender``: LLM-Blender's import paths over blendgate (``ensemble.compat``).

Code written for ``import llm_blender`` runs unmodified: ``llm_blender.Blender``,
``llm_blender.blender.blender_utils.get_topk_candidates_from_ranks`` and
``llm_blender.pair_ranker.pairrm.DebertaV2PairRM`` are blendgate's objects. Only these alias
modules ship here; the implementation is blendgate's. Importing this package raises
ImportError when an original LLM-Blender distribution is installed too (see ``_guard``).
"""

from llm_blender._guard import refuse_if_original_installed

refuse_if_original_installed()

from ensemble.compat import Blender  # only once the guard has passed

__all__ = ["Blender"]
