"""``DebertaV2PairRM``: a transformers PreTrainedModel with the ranker's logits on the same weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import PreTrainedModel

from ensemble.rankers.pairrm import PairRM, pair_logits
from ensemble.rankers.pairrm.hf_model import DebertaV2PairRM
from tests.pairrm.test_model_card_parity import CASES, ModelCardReference


@pytest.fixture(scope="module")
def hf_pairrm(tiny_pairrm_hf_dir: Path) -> DebertaV2PairRM:
    torch.set_num_threads(1)
    return DebertaV2PairRM.from_pretrained(str(tiny_pairrm_hf_dir), device_map="cpu").eval()


@pytest.fixture(scope="module")
def card(tiny_pairrm_hf_dir: Path) -> ModelCardReference:
    return ModelCardReference(tiny_pairrm_hf_dir)


def _rows(card: ModelCardReference) -> dict[str, torch.Tensor]:
    sources, lefts, rights = (list(column) for column in zip(*CASES, strict=True))
    input_ids = card.tokenize_pair(sources, lefts, rights)  # padded to 2048, as the card does
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


def test_is_a_pretrained_model_with_the_checkpoint_weights(hf_pairrm: DebertaV2PairRM) -> None:
    assert isinstance(hf_pairrm, PreTrainedModel)
    assert not hf_pairrm.training
    assert hf_pairrm.device == torch.device("cpu")
    assert {n.split(".")[0] for n, _ in hf_pairrm.named_parameters()} == {
        "pretrained_model", "head_layer"}


def test_logits_equal_the_ranker_on_the_same_weights(
    hf_pairrm: DebertaV2PairRM, card: ModelCardReference, tiny_pairrm: PairRM
) -> None:
    with torch.no_grad():
        out = hf_pairrm(**_rows(card))
    assert out.logits.shape == (len(CASES),) and out.logits.dtype == torch.float32
    expected = pair_logits(tiny_pairrm, CASES)
    assert out.logits.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert min(abs(x) for x in expected.tolist()) > 1e-3  # a sign, not float noise, is compared


def test_tuple_output_and_default_mask(hf_pairrm: DebertaV2PairRM, card: ModelCardReference) -> None:
    rows = _rows(card)
    with torch.no_grad():
        (logits,) = hf_pairrm(rows["input_ids"], return_dict=False)
        by_mask = hf_pairrm(**rows).logits
    assert torch.allclose(logits, by_mask, atol=1e-6)


def test_half_precision(tiny_pairrm_hf_dir: Path, card: ModelCardReference,
                        hf_pairrm: DebertaV2PairRM) -> None:
    half = DebertaV2PairRM.from_pretrained(str(tiny_pairrm_hf_dir)).half().eval()
    assert next(half.parameters()).dtype == torch.float16
    rows = _rows(card)
    with torch.no_grad():
        full, low = hf_pairrm(**rows).logits, half(**rows).logits
    assert low.dtype == torch.float32
    assert torch.allclose(low, full, atol=5e-2)


def test_loads_by_hub_id_from_the_cache_offline(
    tiny_hf_cache: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache_dir, repo_id = tiny_hf_cache
    model = DebertaV2PairRM.from_pretrained(repo_id, cache_dir=str(cache_dir))
    assert model.prefix_ids.source == model.config.source_prefix_id


def test_the_original_layout_is_refused_clearly(tiny_pairrm_original_dir: Path,
                                                tmp_path: Path) -> None:
    directory = shutil.copytree(tiny_pairrm_original_dir, tmp_path / "PairRM")
    with pytest.raises(ValueError, match="not a PairRM-hf config.*loadranker"):
        DebertaV2PairRM.from_pretrained(str(directory))
