"""DeBERTa-v2/v3 disentangled attention computed with ``scaled_dot_product_attention``.

transformers' ``DisentangledSelfAttention`` materialises the scores, masks them and runs its own
softmax and a second batched matmul, and it copies the relative-position projections once per
row of the batch (``.repeat(B)``). :class:`SdpaDisentangledSelfAttention` has the same parameters
(so the same state-dict keys) and the same maths:

    softmax(q·kᵀ/s + c2p/s + p2c/s, keys masked) · v,    s = sqrt(head_dim · (1 + #pos terms))

with the two position terms computed against head-shared projections by broadcasting, summed into
one additive bias, and handed to ``torch.nn.functional.scaled_dot_product_attention`` (a fused
kernel on CPU and CUDA). Rows of padded *queries* are not zeroed as in the eager module: they are
padding, their outputs are never read (keys at padded positions are masked for every real query,
and PairRM's head gathers real positions only), and leaving them unmasked keeps every softmax row
finite in fp16.

:func:`set_attention` swaps it into a backbone in place; ``eager`` keeps transformers' module.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional
from transformers.models.deberta_v2.modeling_deberta_v2 import (
    DebertaV2Model,
    DisentangledSelfAttention,
)

AttentionImpl = Literal["eager", "sdpa"]
ATTENTION_IMPLS: tuple[AttentionImpl, ...] = ("eager", "sdpa")


class SdpaDisentangledSelfAttention(DisentangledSelfAttention):
    """Drop-in for ``DisentangledSelfAttention`` (same parameters) that calls SDPA."""

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[..., L, H·D] -> [..., H, L, D]."""
        return x.unflatten(-1, (self.num_attention_heads, -1)).transpose(-3, -2)

    def forward(  # type: ignore[override]  # same signature as the parent, narrower types
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        output_attentions: bool = False,
        query_states: torch.Tensor | None = None,
        relative_pos: torch.Tensor | None = None,
        rel_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        if output_attentions:
            raise ValueError("sdpa attention does not return attention probabilities; "
                             "use attention='eager'")
        if query_states is None:
            query_states = hidden_states
        query = self._heads(self.query_proj(query_states))  # [B, H, Lq, D]
        key = self._heads(self.key_proj(hidden_states))  # [B, H, Lk, D]
        value = self._heads(self.value_proj(hidden_states))  # [B, H, Lk, D]
        scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
        scale = (query.shape[-1] * scale_factor) ** 0.5

        # [B, 1, Lq, Lk] boolean from the encoder: a key is real if any query may attend to it.
        key_is_real = attention_mask.bool().any(dim=-2, keepdim=True)  # [B, 1, 1, Lk]
        bias = torch.zeros((), dtype=query.dtype, device=query.device)
        if self.relative_attention:
            if rel_embeddings is None or relative_pos is None:
                raise ValueError("relative attention needs rel_embeddings and relative_pos")
            bias = self._position_bias(query, key, relative_pos,
                                       self.pos_dropout(rel_embeddings), scale)
        bias = bias.masked_fill(~key_is_real, torch.finfo(query.dtype).min)
        context = functional.scaled_dot_product_attention(
            query, key, value, attn_mask=bias,
            dropout_p=self.dropout.p if self.training else 0.0, scale=1.0 / scale,
        )  # [B, H, Lq, D]
        return context.transpose(1, 2).flatten(2), None  # [B, Lq, H·D]

    def _position_bias(
        self, query: torch.Tensor, key: torch.Tensor, relative_pos: torch.Tensor,
        rel_embeddings: torch.Tensor, scale: float,
    ) -> torch.Tensor:
        """c2p/s + p2c/s as [B, H, Lq, Lk] (or broadcastable), in the query's dtype."""
        span = self.pos_ebd_size
        rel = rel_embeddings[: 2 * span]  # [2S, hidden]
        relative_pos = relative_pos.to(device=query.device, dtype=torch.long)
        while relative_pos.dim() > 2:  # the encoder passes [1, Lq, Lk]
            relative_pos = relative_pos.squeeze(0)
        positions = query.shape[:-2] + relative_pos.shape  # [B, H, Lq, Lk]
        bias: torch.Tensor | None = None
        if "c2p" in self.pos_att_type:
            proj = self.key_proj if self.share_att_key else self.pos_key_proj
            pos_key = self._heads(proj(rel))  # [H, 2S, D]
            c2p = torch.matmul(query, pos_key.transpose(-1, -2))  # [B, H, Lq, 2S]
            index = torch.clamp(relative_pos + span, 0, 2 * span - 1)  # [Lq, Lk]
            c2p = torch.gather(c2p, -1, index.expand(positions))
            bias = c2p / scale
        if "p2c" in self.pos_att_type:
            if key.shape[-2] != query.shape[-2]:
                raise ValueError("sdpa attention supports self-attention only (Lq == Lk)")
            proj = self.query_proj if self.share_att_key else self.pos_query_proj
            pos_query = self._heads(proj(rel))  # [H, 2S, D]
            p2c = torch.matmul(key, pos_query.transpose(-1, -2))  # [B, H, Lk, 2S]
            index = torch.clamp(-relative_pos + span, 0, 2 * span - 1)  # [Lk, Lq]
            p2c = torch.gather(p2c, -1, index.expand(positions)).transpose(-1, -2)
            bias = p2c / scale if bias is None else bias + p2c / scale
        if bias is None:
            return torch.zeros((), dtype=query.dtype, device=query.device)
        return bias


def set_attention(backbone: DebertaV2Model, impl: AttentionImpl) -> None:
    """Use ``impl`` in every layer of ``backbone``, keeping each layer's weights in place."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
    target: type[DisentangledSelfAttention] = (
        SdpaDisentangledSelfAttention if impl == "sdpa" else DisentangledSelfAttention
    )
    for layer in backbone.encoder.layer:
        module: nn.Module = layer.attention.self
        # Same parameters and buffers in both classes: re-typing keeps weights, device, dtype.
        module.__class__ = target
