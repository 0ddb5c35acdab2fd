"""``DebertaV2PairRM``: PairRM as a transformers ``PreTrainedModel`` (the ``PairRM-hf`` API).

What the LLM-Blender README's "Load PairRM with hugging face ``from_pretrained()``" section
uses: ``DebertaV2PairRM.from_pretrained("llm-blender/PairRM-hf", device_map=...)`` (a hub id,
resolved by transformers through the Hugging Face cache and ``HF_HUB_OFFLINE``, or a local
directory), ``.half()``/``.to()``/``.eval()``, and a call on the model card's ``tokenize_pair``
encodings that returns an output whose ``.logits`` [B] is > 0 where candidate 1 is better.

The modules are :class:`~ensemble.rankers.pairrm.model.PairRMModel`'s (``pretrained_model``,
``head_layer``), built by the same functions and run by the same :func:`pairwise_logits`, so
the checkpoint loads strictly and the logits are the ranker's. The config is the ``-hf``
layout's: a deberta-v2 config plus ``n_tasks``, ``drop_out`` and the ``*_prefix_id`` keys.
The original layout (``llm-blender/PairRM``) has no such config: load it with
``Blender.loadranker`` or :func:`~ensemble.rankers.pairrm.load_pairrm`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DebertaV2Config, DebertaV2Model
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2PreTrainedModel

from ensemble.rankers.pairrm.model import PrefixIds, pairwise_head, pairwise_logits

PREFIX_KEYS = ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id", "cand_prefix_id")


def prefix_ids_of(config: DebertaV2Config) -> PrefixIds:
    """The four prompt-token ids a ``PairRM-hf`` config declares; ValueError if it has none."""
    missing = [key for key in PREFIX_KEYS if getattr(config, key, None) is None]
    if missing:
        raise ValueError(
            f"not a PairRM-hf config: it lacks {missing}. DebertaV2PairRM loads the -hf layout "
            "(llm-blender/PairRM-hf); load the original layout (llm-blender/PairRM) with "
            "Blender().loadranker()"
        )
    return PrefixIds(*(int(getattr(config, key)) for key in PREFIX_KEYS))


class DebertaV2PairRM(DebertaV2PreTrainedModel):
    """DeBERTa-v2 encoder + LLM-Blender's pairwise head; one logit per (source, A, B) row."""

    config_class = DebertaV2Config
    # The checkpoints' own key prefix: "pretrained_model.*" loads without renaming.
    base_model_prefix = "pretrained_model"

    def __init__(self, config: DebertaV2Config) -> None:
        super().__init__(config)
        self.prefix_ids = prefix_ids_of(config)  # plain attribute: not part of the state dict
        self.n_tasks = int(getattr(config, "n_tasks", 1))
        self.pretrained_model = DebertaV2Model(config)
        self.head_layer = pairwise_head(config.hidden_size, self.n_tasks,
                                        float(getattr(config, "drop_out", 0.05)))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **_unused: Any,
    ) -> SequenceClassifierOutput | tuple[torch.Tensor]:
        """``.logits`` [B] float32: > 0 where the row's candidate 1 is better than candidate 2.

        ``attention_mask`` defaults to the non-pad positions. Other encodings keys (e.g.
        ``token_type_ids`` from a tokenizer call) are accepted and ignored, as PairRM uses none.
        """
        if attention_mask is None:
            pad_id = self.config.pad_token_id
            attention_mask = (torch.ones_like(input_ids) if pad_id is None
                              else (input_ids != pad_id).long())
        logits = pairwise_logits(self.pretrained_model, self.head_layer, self.prefix_ids,
                                 input_ids, attention_mask)
        if return_dict is False:
            return (logits,)
        return SequenceClassifierOutput(logits=logits)
