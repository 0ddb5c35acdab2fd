"""Parity with the PairRM model card's own recipe, written here independently of our code.

The reference below follows the published ``PairRM-hf`` usage: ``tokenize_pair`` (per-example
budgets, padding to 2048), a plain ``DebertaV2Model`` holding the checkpoint's
``pretrained_model.*`` weights, all-pad columns trimmed, the vectors at the three prefix ids
gathered, and the head applied as raw matrix products from the ``head_layer.*`` tensors. Our
``pair_logits`` must give the same numbers, on short texts and on texts cut at the limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import DebertaV2Config, DebertaV2Model, PreTrainedTokenizerFast

from ensemble.rankers.pairrm import pair_logits

SOURCE_MAX, CANDIDATE_MAX = 1224, 412
WORDS = ["the", "model", "ranks", "candidate", "answers", "by", "comparing", "them", "in",
         "pairs", "with", "attention"]


def _long_text(n_words: int, offset: int = 0) -> str:
    return " ".join(WORDS[(i + offset) % len(WORDS)] for i in range(n_words))


class ModelCardReference:
    def __init__(self, directory: Path) -> None:
        self.tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
        self.tokenizer.pad_token = "[PAD]"
        config = json.loads((directory / "config.json").read_text())
        self.ids = [config[k] for k in ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id")]
        state = load_file(str(directory / "model.safetensors"))
        self.backbone = DebertaV2Model(DebertaV2Config.from_pretrained(str(directory))).eval()
        backbone_state = {k.removeprefix("pretrained_model."): v for k, v in state.items()
                          if k.startswith("pretrained_model.")}
        self.backbone.load_state_dict(backbone_state, strict=False)
        self.w1, self.b1 = state["head_layer.1.weight"], state["head_layer.1.bias"]
        self.w4, self.b4 = state["head_layer.4.weight"], state["head_layer.4.bias"]

    def tokenize_pair(self, sources: list[str], lefts: list[str], rights: list[str]) -> torch.Tensor:
        max_length = SOURCE_MAX + 2 * CANDIDATE_MAX
        rows = []
        for source, left, right in zip(sources, lefts, rights, strict=True):
            source_ids = self.tokenizer.encode("<|source|>" + source, max_length=SOURCE_MAX,
                                               truncation=True)
            budget = (max_length - len(source_ids)) // 2
            left_ids = self.tokenizer.encode("<|candidate1|>" + left, max_length=budget,
                                             truncation=True)
            right_ids = self.tokenizer.encode("<|candidate2|>" + right, max_length=budget,
                                              truncation=True)
            rows.append(source_ids + left_ids + right_ids)
        return torch.tensor([row + [0] * (max_length - len(row)) for row in rows])

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1.T + self.b1) @ self.w4.T + self.b4

    @torch.no_grad()
    def logits(self, sources: list[str], lefts: list[str], rights: list[str]) -> list[float]:
        input_ids = self.tokenize_pair(sources, lefts, rights)
        mask = input_ids != 0
        keep = mask.any(dim=0)  # drop columns that are padding in every row
        input_ids, mask = input_ids[:, keep], mask[:, keep]
        hidden = self.backbone(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        out = []
        for row in range(input_ids.shape[0]):
            src, a, b = (hidden[row, (input_ids[row] == i).nonzero()[0, 0]] for i in self.ids)
            left = self.head(torch.cat([src, a]))
            right = self.head(torch.cat([src, b]))
            out.append(float((left - right).mean()))
        return out


@pytest.fixture(scope="module")
def reference(tiny_pairrm_hf_dir: Path) -> ModelCardReference:
    torch.set_num_threads(1)
    return ModelCardReference(tiny_pairrm_hf_dir)


CASES = [
    ("hello!", "hi!", "go away!"),
    ("I love you!", "I hate you!", "I love you, too!"),
    ("", "an answer to nothing", ""),
    # A source past 1224 tokens: cut at 1224, candidates get floor((2048 - 1224) / 2) = 412.
    (_long_text(1600), _long_text(500, 3), _long_text(40, 5)),
    # A short source: the candidate budget grows to floor((2048 - Ls) / 2) > 412.
    ("short question", _long_text(900, 1), _long_text(700, 2)),
]


def test_pair_logits_equal_the_model_card_recipe(reference: ModelCardReference, tiny_pairrm):
    sources, lefts, rights = (list(column) for column in zip(*CASES, strict=True))
    expected = reference.logits(sources, lefts, rights)
    ours = pair_logits(tiny_pairrm, CASES)
    assert ours.dtype.name == "float32"
    assert ours.tolist() == pytest.approx(expected, abs=1e-5)


def test_the_long_cases_really_hit_the_limits(reference: ModelCardReference):
    long_source = reference.tokenizer.encode("<|source|>" + CASES[3][0])
    long_candidate = reference.tokenizer.encode("<|candidate1|>" + CASES[4][1])
    assert len(long_source) > SOURCE_MAX
    assert len(long_candidate) > (2048 - len(reference.tokenizer.encode("<|source|>short question"))) // 2
