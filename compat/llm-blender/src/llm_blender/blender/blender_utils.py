"""``llm_blender.blender.blender_utils``: ``get_topk_candidates_from_ranks`` (README fuse step)."""

from ensemble.compat import get_topk_candidates_from_ranks

__all__ = ["get_topk_candidates_from_ranks"]
