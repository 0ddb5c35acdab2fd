"""The PairRM network: an encoder (DeBERTa-v2/v3; BERT-family for rankers trained here) plus
LLM-Blender's small pairwise head.

Spec: ``shared/reference/llm-blender-spec.md`` sections 1.1, 1.5 and 2.1. The module names
(``pretrained_model``, ``head_layer.{0..4}``) are the state-dict names of both public checkpoints
(``llm-blender/PairRM`` and ``llm-blender/PairRM-hf``), so either file loads strictly into
:class:`PairRMModel`. No I/O here: building from files lives in ``checkpoint.py``.

One row of ``input_ids`` is one ordered pair, laid out as

    [CLS] <|source|> src [SEP] [CLS] <|candidate1|> A [SEP] [CLS] <|candidate2|> B [SEP] [PAD]...

and the output is one logit per row: > 0 means the LEFT candidate (A) is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, DebertaV2Config, DebertaV2Model, PretrainedConfig

from ensemble.rankers.pairrm.attention import AttentionImpl, set_attention


@dataclass(frozen=True)
class PrefixIds:
    """Ids of the four prompt tokens (128001..128004 in the real checkpoints)."""

    source: int
    candidate1: int
    candidate2: int
    candidate: int

    @classmethod
    def after_mask(cls, mask_id: int) -> PrefixIds:
        """The ids LLM-Blender's collator produces: the four tokens appended right after [MASK]."""
        return cls(mask_id + 1, mask_id + 2, mask_id + 3, mask_id + 4)


def pairwise_head(hidden: int, n_tasks: int, drop_out: float) -> nn.Sequential:
    """LLM-Blender's head on [h_source; h_candidate] (both checkpoints' ``head_layer.*``)."""
    # Index numbering is part of the checkpoint format: head_layer.1 and head_layer.4.
    return nn.Sequential(
        nn.Dropout(drop_out),
        nn.Linear(2 * hidden, hidden),
        nn.Tanh(),
        nn.Dropout(drop_out),
        nn.Linear(hidden, n_tasks),
    )


def pairwise_logits(
    encoder: DebertaV2Model, head: nn.Module, prefix_ids: PrefixIds,
    input_ids: torch.Tensor, attention_mask: torch.Tensor,
) -> torch.Tensor:
    """Pairwise logits [B] (float32) for rows of ``input_ids`` [B, L] padded at the end.

    Shared by :class:`PairRMModel` and the transformers ``DebertaV2PairRM``, so both give
    the same numbers from the same weights.
    """
    # Drop columns that are padding in every row (both originals do this): L -> L'.
    width = int(attention_mask.sum(dim=1).max().item())
    input_ids, attention_mask = input_ids[:, :width], attention_mask[:, :width]
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    h_src = gather_at_token(hidden, input_ids, prefix_ids.source)  # [B, H]
    h_left = gather_at_token(hidden, input_ids, prefix_ids.candidate1)  # [B, H]
    h_right = gather_at_token(hidden, input_ids, prefix_ids.candidate2)  # [B, H]
    left = head(torch.cat([h_src, h_left], dim=-1))  # [B, n_tasks]
    right = head(torch.cat([h_src, h_right], dim=-1))  # [B, n_tasks]
    return (left - right).mean(dim=-1).float()  # [B]


def gather_at_token(hidden: torch.Tensor, input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """The hidden state [B, H] at the single position of ``token_id`` in every row."""
    hits = input_ids == token_id  # [B, L']
    counts = hits.sum(dim=1)  # [B]
    if not bool((counts == 1).all()):
        bad = int((counts != 1).nonzero()[0, 0])
        raise ValueError(
            f"row {bad} contains prompt token id {token_id} {int(counts[bad])} times; "
            "each pair row must contain it exactly once"
        )
    positions = hits.int().argmax(dim=1)  # [B]
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions]  # [B, H]


class PairRMModel(nn.Module):
    """Encoder backbone (``pretrained_model``) + shared pairwise head (``head_layer``).

    A ``DebertaV2Config`` builds ``DebertaV2Model`` (both public checkpoints); any other encoder
    config (BERT family, ``blendgate train-ranker``) builds its ``AutoModel``.
    """

    def __init__(
        self, config: PretrainedConfig, prefix_ids: PrefixIds, *, n_tasks: int = 1,
        drop_out: float = 0.05, attention: AttentionImpl = "sdpa",
    ) -> None:
        super().__init__()
        self.config = config
        self.prefix_ids = prefix_ids  # plain attribute: not part of the state dict
        self.n_tasks = n_tasks
        hidden = config.hidden_size
        if isinstance(config, DebertaV2Config):
            self.pretrained_model = DebertaV2Model(config)
            # "sdpa" (default) and "eager" share parameters and agree to float rounding.
            set_attention(self.pretrained_model, attention)
        else:  # transformers' own attention choice ("sdpa" where the model supports it)
            self.pretrained_model = AutoModel.from_config(config, attn_implementation=attention)
        self.head_layer = pairwise_head(hidden, n_tasks, drop_out)

    @property
    def max_row_tokens(self) -> int | None:
        """The longest row the encoder can take: its position table for absolute positions
        (BERT: 512); None for DeBERTa's relative positions."""
        if isinstance(self.config, DebertaV2Config) and self.config.relative_attention:
            return None
        return getattr(self.config, "max_position_embeddings", None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pairwise logits [B] (float32) for rows of ``input_ids`` [B, L] padded at the end."""
        return pairwise_logits(self.pretrained_model, self.head_layer, self.prefix_ids,
                               input_ids, attention_mask)
