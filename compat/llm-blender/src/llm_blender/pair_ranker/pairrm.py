"""``llm_blender.pair_ranker.pairrm.DebertaV2PairRM``: PairRM-hf as a transformers model."""

from ensemble.compat import DebertaV2PairRM

__all__ = ["DebertaV2PairRM"]
