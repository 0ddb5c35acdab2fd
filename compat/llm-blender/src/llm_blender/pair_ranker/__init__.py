"""``llm_blender.pair_ranker``: the original's package of the PairRM model class."""
