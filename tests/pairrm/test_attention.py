"""The SDPA disentangled attention is a drop-in for transformers' eager module: same weights,
same outputs at every real position, whatever the padding, for each DeBERTa attention variant."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DebertaV2Config, DebertaV2Model
from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention

from ensemble.compat.blender import Blender
from ensemble.config import parse_config
from ensemble.errors import ConfigError
from ensemble.rankers.pairrm import load_pairrm, pair_logits
from ensemble.rankers.pairrm.attention import SdpaDisentangledSelfAttention, set_attention
from ensemble.rankers.pairrm.scoring import DEFAULT_MAX_BATCH_TOKENS

SRC = "Which is the better haiku about autumn leaves?"
CANDIDATES = [
    "Red leaves drift and fall / the maple lets go softly / a quiet ending.",
    "Leaves.",
    ("Autumn wind arrives / gold and crimson paper boats / sailing down the street / "
     "children chase them home before the early dark comes in."),
]
TRIPLES = [(SRC, a, b) for a in CANDIDATES for b in CANDIDATES if a != b]


def _backbone(**overrides: object) -> DebertaV2Model:
    torch.manual_seed(7)
    config = {"vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64,
              "relative_attention": True, "position_buckets": 8, "pos_att_type": ["p2c", "c2p"],
              "share_att_key": True, "norm_rel_ebd": "layer_norm", "position_biased_input": False,
              "type_vocab_size": 0, **overrides}
    return DebertaV2Model(DebertaV2Config(**config)).eval()


@pytest.mark.parametrize("overrides", [
    {},  # DeBERTa-v3 / PairRM: shared keys, both terms, log buckets
    {"share_att_key": False, "position_buckets": -1, "pos_att_type": ["c2p"]},
    {"share_att_key": False, "pos_att_type": ["p2c"]},
    {"pos_att_type": []},
], ids=["v3-shared-p2c-c2p", "separate-c2p-unbucketed", "separate-p2c", "no-position-terms"])
def test_sdpa_equals_eager_at_every_real_position(overrides: dict[str, object]):
    eager = _backbone(**overrides)
    sdpa = copy.deepcopy(eager)
    set_attention(sdpa, "sdpa")
    ids = torch.randint(5, 97, (3, 40))
    mask = torch.ones_like(ids)
    mask[1, 23:] = 0  # rows of three lengths: padding must not leak into real positions
    mask[2, 6:] = 0
    with torch.no_grad():
        want = eager(input_ids=ids, attention_mask=mask).last_hidden_state
        got = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-5)


def test_set_attention_swaps_every_layer_and_keeps_the_weights():
    model = _backbone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_attention(model, "sdpa")
    assert all(type(layer.attention.self) is SdpaDisentangledSelfAttention
               for layer in model.encoder.layer)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    set_attention(model, "eager")
    assert all(type(layer.attention.self) is DisentangledSelfAttention
               for layer in model.encoder.layer)
    with pytest.raises(ValueError, match="attention must be one of"):
        set_attention(model, "flash")  # type: ignore[arg-type]


def test_sdpa_refuses_to_return_attention_probabilities():
    model = _backbone()
    set_attention(model, "sdpa")
    ids = torch.randint(5, 97, (1, 8))
    with pytest.raises(ValueError, match="eager"), torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)


def test_pairrm_logits_agree_across_attention_implementations(tiny_pairrm_hf_dir: Path):
    eager = load_pairrm(str(tiny_pairrm_hf_dir), device="cpu", attention="eager")
    sdpa = load_pairrm(str(tiny_pairrm_hf_dir), device="cpu", attention="sdpa")
    assert type(eager.model.pretrained_model.encoder.layer[0].attention.self) is DisentangledSelfAttention
    want = pair_logits(eager, TRIPLES)
    np.testing.assert_allclose(pair_logits(sdpa, TRIPLES), want, rtol=0, atol=1e-5)
    assert np.abs(want).max() > 1e-3  # a head that outputs ~0 everywhere would prove nothing


def test_blender_and_config_take_the_attention_option(tiny_pairrm_hf_dir: Path):
    blender = Blender()
    blender.loadranker(str(tiny_pairrm_hf_dir), device="cpu", attention="eager")
    layer = blender.ranker.model.pretrained_model.encoder.layer[0]  # type: ignore[union-attr]
    assert type(layer.attention.self) is DisentangledSelfAttention
    base = {"backends": {"m": {"kind": "openai", "base_url": "http://x/v1", "model": "m"}}}
    ranker = {"type": "pairrm", "checkpoint": str(tiny_pairrm_hf_dir)}
    service = parse_config({**base, "rank_service": ranker}).rank_service
    assert service is not None and service.type == "pairrm"
    assert service.attention == "sdpa" and service.compile is False
    assert service.max_batch_tokens == DEFAULT_MAX_BATCH_TOKENS  # config and library agree
    with pytest.raises(ConfigError, match="attention"):
        parse_config({**base, "rank_service": {**ranker, "attention": "flash"}})


@pytest.mark.slow  # torch.compile of the tiny encoder takes ~20 s on two cores
def test_compiled_encoder_gives_the_same_logits(tiny_pairrm_hf_dir: Path):
    eager = load_pairrm(str(tiny_pairrm_hf_dir), device="cpu", attention="eager")
    compiled = load_pairrm(str(tiny_pairrm_hf_dir), device="cpu", compile=True)
    assert set(compiled.model.state_dict()) == set(eager.model.state_dict())
    want = pair_logits(eager, TRIPLES)
    np.testing.assert_allclose(pair_logits(compiled, TRIPLES), want, rtol=0, atol=1e-5)
    # a second call with other lengths reuses the dynamic-shape graph and stays exact
    np.testing.assert_allclose(pair_logits(compiled, TRIPLES[:2]), want[:2], rtol=0, atol=1e-5)
