"""The original library calls: get_topk_candidates_from_ranks, fuse, rank_and_fuse, loadfuser."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ensemble.compat.fusion import FusionMixin
from ensemble.fusers.genfuser.prompt import format_input
from ensemble.fusers.topk import get_topk_candidates_from_ranks

INPUTS = ["hello, how are you!", "I love you!", "a fox"]
CANDIDATES = [
    ["get out!", "hi! I am fine, thanks!", "bye!"],
    ["I love you too!", "I hate you!", "Thanks! You're a good guy!"],
    ["the quick brown fox", " ".join(["fox"] * 200), "dog"],
]


class Host(FusionMixin):
    """A ``Blender`` stand-in: ``rank`` answers fixed ranks or scores."""

    def __init__(self, ranks: Any = None, scores: Any = None) -> None:
        self.ranks, self.scores = ranks, scores
        self.rank_calls: list[dict[str, Any]] = []

    def rank(self, inputs: Sequence[str], candidates: Sequence[Sequence[str]],
             instructions: Sequence[str] | None = None, return_scores: bool = False,
             batch_size: int = 8) -> Any:
        self.rank_calls.append({"n": len(inputs), "return_scores": return_scores,
                                "batch_size": batch_size, "instructions": instructions})
        return self.scores if return_scores else self.ranks


def original_fuse(model: Any, tokenizer: Any, inputs: Sequence[str],
                  candidates: list[list[str]], batch_size: int, cut: int = 128,
                  **generate_kwargs: Any) -> list[str]:
    """The original algorithm, written out plainly as the reference (spec §3.8, §4.2)."""
    texts = []
    for text, cands in zip(inputs, candidates, strict=False):
        for i, c in enumerate(cands):
            ids = tokenizer.encode(c, add_special_tokens=False)
            if len(ids) > cut:
                cands[i] = tokenizer.decode(ids[:cut]) + "..."
        texts.append(format_input("", text, cands))
    params = {"max_new_tokens": cut, "num_beams": 4, "num_return_sequences": 1,
              **generate_kwargs}
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], max_length=1024, truncation=True,
                          padding="max_length", return_tensors="pt", add_special_tokens=False)
        keep = batch["attention_mask"].ne(0).any(dim=0)
        with torch.inference_mode():
            ids = model.generate(input_ids=batch["input_ids"][:, keep],
                                 attention_mask=batch["attention_mask"][:, keep], **params)
        out.extend(tokenizer.batch_decode(ids, skip_special_tokens=True))
    return out


@pytest.fixture(scope="module")
def host(tiny_fuser_dir: Path) -> Host:
    blender = Host()
    blender.loadfuser(str(tiny_fuser_dir), device="cpu")
    return blender


def test_topk_orders_by_ascending_rank() -> None:
    ranks = np.array([[3, 1, 2], [1, 3, 2]], dtype=np.int32)
    top = get_topk_candidates_from_ranks(ranks, CANDIDATES[:2], top_k=2)
    assert isinstance(top, np.ndarray) and top.dtype.kind == "U" and top.shape == (2, 2)
    assert top.tolist() == [["hi! I am fine, thanks!", "bye!"],
                            ["I love you too!", "Thanks! You're a good guy!"]]
    everything = get_topk_candidates_from_ranks(ranks, CANDIDATES[:2], top_k=10)
    assert everything.shape == (2, 3)  # k larger than n keeps all, best first
    assert get_topk_candidates_from_ranks(ranks, CANDIDATES[:2], top_k=None).shape == (2, 3)
    with pytest.raises(ValueError):
        get_topk_candidates_from_ranks([[1, 2]], [["a", "b", "c"]], top_k=1)


def test_fuse_matches_the_original_schedule(host: Host, tiny_fuser_dir: Path) -> None:
    assert host.fuser is not None
    caller = copy.deepcopy(CANDIDATES)
    ours = host.fuse(INPUTS, caller, batch_size=2, max_new_tokens=10)
    reference = original_fuse(host.fuser.model, host.fuser.tokenizer, INPUTS,
                              copy.deepcopy(CANDIDATES), batch_size=2, max_new_tokens=10)
    assert isinstance(ours, list) and len(ours) == 3 and all(ours)
    assert ours == reference
    assert caller == CANDIDATES  # the original wrote the cut candidate back; we do not


def test_batch_size_does_not_change_the_result(host: Host) -> None:
    assert host.fuse(INPUTS, CANDIDATES, batch_size=1, max_new_tokens=6) == host.fuse(
        INPUTS, CANDIDATES, batch_size=4, max_new_tokens=6)


def test_candidate_max_length_is_popped_and_bounds_the_output(host: Host) -> None:
    assert host.fuser is not None
    ours = host.fuse(INPUTS[2:], CANDIDATES[2:], candidate_max_length=5)
    reference = original_fuse(host.fuser.model, host.fuser.tokenizer, INPUTS[2:],
                              copy.deepcopy(CANDIDATES[2:]), batch_size=4, cut=5)
    assert ours == reference and ours[0]
    assert len(host.fuser.tokenizer.encode(ours[0], add_special_tokens=False)) <= 5


def test_rank_and_fuse_with_ranks_and_with_scores(host: Host) -> None:
    host.ranks = np.array([[3, 1, 2], [1, 3, 2], [2, 3, 1]], dtype=np.int32)
    host.scores = -host.ranks.astype(np.float32)  # same order, higher is better
    top = [["hi! I am fine, thanks!", "bye!"], ["I love you too!", "Thanks! You're a good guy!"],
           ["dog", "the quick brown fox"]]
    expected = host.fuse(INPUTS, top, max_new_tokens=6)
    fused, ranks = host.rank_and_fuse(INPUTS, CANDIDATES, top_k=2, max_new_tokens=6)
    assert fused == expected and ranks is host.ranks
    fused_s, scores = host.rank_and_fuse(INPUTS, CANDIDATES, return_scores=True, top_k=2,
                                         max_new_tokens=6)
    assert fused_s == expected and scores is host.scores
    assert host.rank_calls[-1] == {"n": 3, "return_scores": True, "batch_size": 4,
                                   "instructions": None}


def test_loadfuser_settings(tiny_fuser_dir: Path) -> None:
    blender = Host()
    with pytest.raises(RuntimeError):
        blender.fuse(["x"], [["y"]])
    with pytest.raises(TypeError):
        blender.loadfuser(str(tiny_fuser_dir), device="cpu", load_in_4bit=True)
    blender.loadfuser(str(tiny_fuser_dir), device="cpu", candidate_maxlength=7,
                      torch_dtype="bfloat16", max_length=64)
    assert blender.fuser is not None
    assert blender.fuser_settings.candidate_max_length == 7
    assert blender.fuser_settings.max_length == 64
    assert next(blender.fuser.model.parameters()).dtype == torch.bfloat16
    out = blender.fuse(["hello"], [["a", "b"]], num_beams=1)
    assert len(blender.fuser.tokenizer.encode(out[0], add_special_tokens=False)) <= 7


def test_loadfuser_accepts_a_torch_device(tiny_fuser_dir: Path) -> None:
    blender = Host()
    blender.loadfuser(str(tiny_fuser_dir), device=torch.device("cpu"))
    assert blender.fuser_settings.device == "cpu"
    assert blender.fuser is not None
    assert next(blender.fuser.model.parameters()).device == torch.device("cpu")
