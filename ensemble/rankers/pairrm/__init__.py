"""PairRM (LLM-Blender's pairwise reward model) for blendgate.

Public names:

- :func:`load_pairrm` (``checkpoint.py``): hub id / HF cache / local dir, either layout -> :class:`PairRM`.
- :class:`PairRM` (``scoring.py``): the loaded model + tokenizer + truncation limits.
- :func:`pair_logits`: logit(left, right | source) for many triples in length-sorted batches.
- :func:`full_matrices` / :func:`full_matrix`: all ordered pairs of all items in one pool.
- :func:`scores_from_matrix`, :func:`ranks_from_scores`: spec 1.7 ("max_logits", competition ranks);
  :func:`wins_from_matrix`: the "max_wins" counts.
- :func:`bubble_select` / :class:`BubbleResult`: the single random pass of spec 1.8.
- :class:`PairRMModel`, :class:`PrefixIds` (``model.py``): the network.
- :class:`DebertaV2PairRM` (``hf_model.py``): the same network as a transformers
  ``PreTrainedModel`` (``from_pretrained`` of the ``-hf`` layout, ``.logits``).
- :func:`chat_prompt` / :class:`ChatPrompt` (``inputs.py``): chat messages -> PairRM source.
- :class:`PairRMRanker` (``ranker.py``): the gateway's batched ``Ranker``.

Importing this package imports torch and transformers.
"""

from ensemble.rankers.pairrm.checkpoint import load_pairrm
from ensemble.rankers.pairrm.hf_model import DebertaV2PairRM
from ensemble.rankers.pairrm.inputs import ChatPrompt, chat_prompt
from ensemble.rankers.pairrm.model import PairRMModel, PrefixIds
from ensemble.rankers.pairrm.ranker import PairRMRanker
from ensemble.rankers.pairrm.scoring import (
    BubbleResult,
    PairRM,
    bubble_select,
    full_matrices,
    full_matrix,
    pair_logits,
    scores_from_matrix,
    wins_from_matrix,
)
from ensemble.rankers.ranks import ranks_from_scores  # the rank rule all rankers share

__all__ = [
    "BubbleResult",
    "ChatPrompt",
    "DebertaV2PairRM",
    "PairRM",
    "PairRMModel",
    "PairRMRanker",
    "PrefixIds",
    "bubble_select",
    "chat_prompt",
    "full_matrices",
    "full_matrix",
    "load_pairrm",
    "pair_logits",
    "ranks_from_scores",
    "scores_from_matrix",
    "wins_from_matrix",
]
