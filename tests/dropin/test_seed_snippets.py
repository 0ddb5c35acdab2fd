"""Every python block of the seed README and the PairRM model card, run unmodified against
the drop-in (``import llm_blender`` from compat/llm-blender/src) in a fresh interpreter whose
HF cache holds tiny checkpoints under the hub ids the blocks name (cached_checkpoints.py),
with ``HF_HUB_OFFLINE=1``.

The blocks are parsed from shared/seeds/ at test time, so a changed seed is what runs.
Substituted, and nothing else (``SUBSTITUTIONS``; weights come from the cache as named):

- README "Load PairRM with hugging face": ``device_map="cuda:0"`` becomes ``"cpu"``: the
  blocks run on CPU on every host (conftest.py hides CUDA), so that they can be compared
  exactly with a CPU reference;
- model card, the multi-turn conversation block: the two ``...`` lines, which stand for
  "more turns", are dropped. As written they put an ``Ellipsis`` into each conversation,
  which is no message (the original's turn validation rejects it as well).

Expected values come from blendgate's own API on the same files loaded from their source
directories (not through the cache or the drop-in), on one CPU thread like the snippets.
The bash blocks (installing or training the original) and the BibTeX are not Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ensemble.compat.blender import Blender
from ensemble.rankers.pairrm import load_pairrm, pair_logits
from tests.dropin.cached_checkpoints import FUSER, PAIRRM_HF
from tests.dropin.conftest import RunBlocks
from tests.dropin.seed_blocks import MODEL_CARD, README, Block, python_blocks, read_blocks

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not (README.is_file() and MODEL_CARD.is_file()),
                       reason=f"seed files not found at {README.parent} (../shared beside the clone)"),
]

RANK_INPUTS = ["hello, how are you!", "I love you!"]
RANK_CANDIDATES = [["get out!", "hi! I am fine, thanks!", "bye!"],
                   ["I love you too!", "I hate you!", "Thanks! You're a good guy!"]]
CMP_INPUTS, CMP_A, CMP_B = ["hello!", "I love you!"], ["hi!", "I hate you!"], ["f**k off!", "I love you, too!"]
HF_HEADING = "Load PairRM with hugging face `from_pretrained()`"
CONVERSATION_HEADING = "Use Case 1: Comparing/Ranking output candidates given an instruction"
# (document, heading) -> (old, new, how many times old occurs in that section's blocks)
SUBSTITUTIONS: dict[tuple[str, str], list[tuple[str, str, int]]] = {
    (README.name, HF_HEADING): [('device_map="cuda:0"', 'device_map="cpu"', 1)],
    (MODEL_CARD.name, CONVERSATION_HEADING): [("    ...\n", "", 2)],
}
# The sections each case runs, in one session, in document order.
CASES = {
    "readme-rank-compare-fuse": [(README, "Use case 1: (Re-)Ranking model outputs by pairwise comparisons")],
    "readme-best-of-n": [(README, "Use case 2: Best-of-N Sampling (Re-ranking)")],
    "readme-rank-with-ref": [(README, "Use case 3: Used as a local Pairwise Evaluator and for better RLHF")],
    "readme-from-pretrained": [(README, HF_HEADING)],
    "card-rank-compare-conversations": [(MODEL_CARD, "Installation"), (MODEL_CARD, CONVERSATION_HEADING)],
    "card-best-of-n": [(MODEL_CARD, "Use Case 2: Best-of-n Sampling (Decoding Enhancement)")],
}


def blocks_of(case: str) -> list[Block]:
    return [b for path, heading in CASES[case] for b in python_blocks(path, heading)]


def codes_of(case: str) -> list[str]:
    """The case's blocks, substituted; each substitution must match exactly as often as said."""
    blocks, codes = blocks_of(case), []
    seen: dict[tuple[str, str, str], int] = {}
    for block in blocks:
        code = block.code
        for old, new, _ in SUBSTITUTIONS.get((block.document, block.heading), []):
            key = (block.document, block.heading, old)
            seen[key] = seen.get(key, 0) + code.count(old)
            code = code.replace(old, new)
        codes.append(code)
    for path, heading in CASES[case]:
        for old, _, count in SUBSTITUTIONS.get((path.name, heading), []):
            assert seen.get((path.name, heading, old)) == count, (heading, old)
    return codes


def value(report: dict[str, Any], block: int, name: str) -> Any:
    return report["blocks"][block][name]


def plain(described: dict[str, Any]) -> Any:
    """Undo run_blocks.describe for lists, dicts and scalars."""
    inner = described["value"]
    if described["type"] in ("list", "tuple"):
        return [plain(v) for v in inner]
    if described["type"] == "dict":
        return {k: plain(v) for k, v in inner.items()}
    return inner


@pytest.fixture(scope="module")
def reference(hf_home: dict[str, Path]) -> Blender:
    """blendgate's Blender on the cached PairRM weights, fp32 on CPU, from the -hf source dir
    (the same weights as llm-blender/PairRM's; outside the cache its backbone id resolves
    nowhere)."""
    torch.set_num_threads(1)
    blender = Blender()
    blender.loadranker(str(hf_home[PAIRRM_HF]), device="cpu")
    return blender


def assert_ranks_are_the_reference(described: dict[str, Any], reference: Blender,
                                   inputs: list[str], batch_size: int) -> None:
    scores = reference.rank(inputs, RANK_CANDIDATES, return_scores=True, batch_size=batch_size)
    gaps = np.diff(np.sort(scores, axis=1), axis=1)
    assert gaps.min() > 1e-3, "score gaps too small to compare ranks"
    expected = reference.rank(inputs, RANK_CANDIDATES, batch_size=batch_size)
    assert described == {"type": "ndarray", "dtype": "int32", "shape": [2, 3],
                         "value": expected.tolist()}


def test_every_python_block_of_the_seeds_is_run() -> None:
    run = {(b.document, b.line) for case in CASES for b in blocks_of(case)}
    blocks = read_blocks(README) + read_blocks(MODEL_CARD)
    assert {(b.document, b.line) for b in blocks if b.language == "python"} == run
    assert {b.language for b in blocks if b.language != "python"} == {"bash", "bibtex"}


def test_readme_rank_compare_and_fuse(run_blocks: RunBlocks, reference: Blender,
                                      hf_home: dict[str, Path]) -> None:
    report = run_blocks(codes_of("readme-rank-compare-fuse"),
                        [[], ["ranks"], ["comparison_results"],
                         ["topk_candidates", "fuse_generations", "ranks"]])
    assert_ranks_are_the_reference(value(report, 1, "ranks"), reference, RANK_INPUTS, 1)
    logits = reference.compare(CMP_INPUTS, CMP_A, CMP_B, return_logits=True)
    assert np.abs(logits).min() > 1e-3
    assert value(report, 2, "comparison_results") == {
        "type": "ndarray", "dtype": "bool", "shape": [2], "value": (logits > 0).tolist()}
    # The fuse block: top-k of the rank block's ranks, fused; then rank_and_fuse.
    ranks = reference.rank(RANK_INPUTS, RANK_CANDIDATES, batch_size=1)
    topk = reference.get_topk_candidates_from_ranks(ranks, RANK_CANDIDATES, top_k=3)
    assert value(report, 3, "topk_candidates")["value"] == topk.tolist()
    reference.loadfuser(str(hf_home[FUSER]), device="cpu")
    fused, _ = reference.rank_and_fuse(CMP_INPUTS, RANK_CANDIDATES, batch_size=2, top_k=3)
    assert [g["value"] for g in value(report, 3, "fuse_generations")["value"]] == fused
    assert all(isinstance(text, str) and text for text in fused)
    assert_ranks_are_the_reference(value(report, 3, "ranks"), reference, CMP_INPUTS, 2)


def test_readme_rank_with_ref(run_blocks: RunBlocks, reference: Blender) -> None:
    report = run_blocks(codes_of("readme-rank-with-ref"),
                        [["rewards"], ["rewards"]])
    longest = reference.rank_with_ref(RANK_INPUTS, RANK_CANDIDATES, return_scores=True,
                                      ref_mode="longest")
    first = reference.rank_with_ref(RANK_INPUTS, RANK_CANDIDATES, return_scores=True,
                                    ref_candidates=[c[0] for c in RANK_CANDIDATES])
    for k, expected in enumerate((longest, first)):
        got = value(report, k, "rewards")
        assert (got["type"], got["dtype"], got["shape"]) == ("ndarray", "float64", [2, 3])
        np.testing.assert_allclose(got["value"], expected, atol=1e-5)
    assert "Rewards for input 1:" in report["stdout"]


def test_readme_from_pretrained_and_tokenize_pair(run_blocks: RunBlocks,
                                                  hf_home: dict[str, Path]) -> None:
    report = run_blocks(codes_of("readme-from-pretrained"),
                        [["logits", "comparison_results"]])
    torch.set_num_threads(1)
    ranker = load_pairrm(str(hf_home[PAIRRM_HF]), device="cpu", dtype="float32")
    expected = pair_logits(ranker, list(zip(CMP_INPUTS, CMP_A, CMP_B, strict=True))).tolist()
    assert min(abs(x) for x in expected) > 1e-3
    logits = value(report, 0, "logits")
    assert logits["type"] == "list"
    assert [x["value"] for x in logits["value"]] == pytest.approx(expected, abs=1e-4)
    results = value(report, 0, "comparison_results")
    assert (results["type"], results["dtype"]) == ("tensor", "torch.bool")
    assert results["value"] == [x > 0 for x in expected]
    assert str([x["value"] for x in logits["value"]]) in report["stdout"]


def test_card_rank_compare_and_conversations(run_blocks: RunBlocks, reference: Blender) -> None:
    report = run_blocks(codes_of("card-rank-compare-conversations"),
                        [[], ["ranks"], ["comparison_results"],
                         ["comparison_results", "conv1", "conv2"]])
    assert_ranks_are_the_reference(value(report, 1, "ranks"), reference, RANK_INPUTS, 1)
    logits = reference.compare(CMP_INPUTS, CMP_A, CMP_B, return_logits=True)
    assert value(report, 2, "comparison_results")["value"] == (logits > 0).tolist()
    conv1, conv2 = (plain(value(report, 3, name)) for name in ("conv1", "conv2"))
    assert [m["role"] for m in conv1] == [m["role"] for m in conv2] == ["USER", "ASSISTANT"]
    conversation_logit = reference.compare_conversations([conv1], [conv2], return_logits=True)
    assert abs(float(conversation_logit[0])) > 1e-3
    assert value(report, 3, "comparison_results") == {
        "type": "ndarray", "dtype": "bool", "shape": [1],
        "value": (conversation_logit > 0).tolist()}


@pytest.mark.parametrize("case", ["readme-best-of-n", "card-best-of-n"])
def test_best_of_n_generation(run_blocks: RunBlocks, case: str) -> None:
    report = run_blocks(codes_of(case), [["outputs", "prompts"]])
    outputs, prompts = value(report, 0, "outputs"), value(report, 0, "prompts")
    assert outputs["type"] == "list" and len(outputs["value"]) == 1
    assert outputs["value"][0]["type"] == "str"
    assert prompts["value"][0]["value"].startswith("<|im_start|>system\nYou are a friendly chatbot.")
    assert "### best-of-n generations:" in report["stdout"]
