"""``ensemble.Blender``: llm-blender's API on the tiny PairRM checkpoints (spec sections 3 and 8).

Expected values are computed independently: one :func:`pair_logits` call per ordered pair on a
separately loaded model (the ``tiny_pairrm`` fixture), never through ``Blender`` itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ensemble
from ensemble.compat.blender import Blender, conversation_texts, pick_references
from ensemble.rankers.pairrm import PairRM, pair_logits
from ensemble.rankers.pairrm.inputs import CONVERSATION_INSTRUCTION

INPUTS = ["hello, how are you!", "I love you!"]
CANDIDATES = [
    ["get out!", "hi! I am fine, thanks!", "bye!"],
    ["I love you too!", "I hate you!", "Thanks! You're a good guy!"],
]
# Batch shape changes float32 summation order: logits O(0.5) move by a few ulps.
ATOL = 5e-6
LONG = " ".join(["the relative position of every token matters for attention"] * 12)


def logit(pairrm: PairRM, source: str, left: str, right: str, **limits: int) -> float:
    """logit(left, right | source) from one single-row forward pass."""
    return float(pair_logits(pairrm, [(source, left, right)], max_batch_pairs=1, **limits)[0])


def expected_scores(pairrm: PairRM, source: str, cands: list[str], **limits: int) -> np.ndarray:
    """s_i = (1/n) sum_j (M[i,j] - M[j,i]) built pair by pair (spec 1.7)."""
    n = len(cands)
    m = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                m[i, j] = logit(pairrm, source, cands[i], cands[j], **limits)
    return (m - m.T).sum(axis=1) / n


def competition(scores: np.ndarray) -> list[int]:
    return [1 + sum(1 for o in scores if o > s) for s in scores]


@pytest.fixture(scope="module")
def blender(tiny_pairrm_hf_dir: Path) -> Blender:
    torch.set_num_threads(1)
    b = Blender()
    b.loadranker(str(tiny_pairrm_hf_dir), device="cpu")
    return b


# ----------------------------------------------------------------------------- loadranker


def test_both_layouts_load_and_agree(blender: Blender, tiny_pairrm_original_dir: Path):
    other = Blender()
    other.loadranker(str(tiny_pairrm_original_dir), device="cpu")
    a = blender.compare(INPUTS, ["hi!", "no"], ["bye", "yes!"], return_logits=True)
    b = other.compare(INPUTS, ["hi!", "no"], ["bye", "yes!"], return_logits=True)
    np.testing.assert_allclose(a, b, atol=ATOL)


def test_default_device_and_fp16_rule(tiny_pairrm_hf_dir: Path):
    b = Blender()
    b.loadranker(str(tiny_pairrm_hf_dir))  # no device: cuda if available, else cpu
    assert b.device == ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = Blender()
    cpu.loadranker(str(tiny_pairrm_hf_dir), device="cpu", fp16=True)  # fp16 only on CUDA/MPS
    assert next(cpu.ranker.model.parameters()).dtype == torch.float32


def test_a_torch_device_is_accepted(tiny_pairrm_hf_dir: Path):
    # TRL's PairRMJudge passed Accelerator().device, a torch.device, not a string.
    b = Blender()
    b.loadranker(str(tiny_pairrm_hf_dir), device=torch.device("cpu"))
    assert b.device == "cpu"
    assert next(b.ranker.model.parameters()).device == torch.device("cpu")


def test_loadranker_length_overrides_and_unknown_options(tiny_pairrm_hf_dir: Path, tiny_pairrm):
    b = Blender()
    b.loadranker(str(tiny_pairrm_hf_dir), device="cpu", source_maxlength=16, candidate_maxlength=8)
    assert (b.ranker.source_max_length, b.ranker.candidate_max_length) == (16, 8)
    got = b.compare([LONG], [LONG + " yes"], ["no " + LONG], mode="[A,B]", return_logits=True)
    want = logit(tiny_pairrm, LONG, LONG + " yes", "no " + LONG,
                 source_max_length=16, candidate_max_length=8)
    assert got[0] == pytest.approx(want, abs=ATOL)
    assert want != pytest.approx(logit(tiny_pairrm, LONG, LONG + " yes", "no " + LONG), abs=1e-9)
    with pytest.raises(TypeError, match="unsupported"):
        Blender().loadranker(str(tiny_pairrm_hf_dir), device="cpu", inference_mode="full")


def test_loadranker_finds_the_original_download_location(tiny_pairrm_hf_dir: Path, tmp_path: Path):
    # llm-blender 0.0.2 downloaded snapshots to <cache_dir>/<repo id>.
    shutil.copytree(tiny_pairrm_hf_dir, tmp_path / "llm-blender" / "PairRM")
    b = Blender()
    b.loadranker("llm-blender/PairRM", device="cpu", cache_dir=str(tmp_path))
    assert b.ranker_path == "llm-blender/PairRM"
    assert b.rank(INPUTS, CANDIDATES).shape == (2, 3)


def test_methods_need_a_ranker():
    with pytest.raises(RuntimeError, match="loadranker"):
        Blender().rank(INPUTS, CANDIDATES)


# ----------------------------------------------------------------------------- rank


def test_rank_scores_follow_the_full_matrix(blender: Blender, tiny_pairrm):
    scores = blender.rank(INPUTS, CANDIDATES, return_scores=True)
    assert scores.dtype == np.float32 and scores.shape == (2, 3)
    for k in range(2):
        want = expected_scores(tiny_pairrm, INPUTS[k], CANDIDATES[k])
        np.testing.assert_allclose(scores[k], want, atol=ATOL)
    np.testing.assert_allclose(scores.sum(axis=1), 0.0, atol=ATOL)
    ranks = blender.rank(INPUTS, CANDIDATES)
    assert ranks.dtype == np.int32 and ranks.shape == (2, 3)
    assert [competition(row) for row in scores] == ranks.tolist()
    assert all(sorted(row) == [1, 2, 3] for row in ranks.tolist())


def test_rank_competition_ties_and_single_candidate(blender: Blender, tiny_pairrm):
    # Duplicates tie exactly (as in the original's separate passes) and share the best rank.
    cands = ["a quite different and longer reply", "hello world", "no", "hello world"]
    scores = blender.rank(["q"], [cands], return_scores=True)[0]
    assert scores[1] == scores[3]
    np.testing.assert_allclose(scores, expected_scores(tiny_pairrm, "q", cands), atol=ATOL)
    ranks = blender.rank(["q"], [cands])[0].tolist()
    assert ranks == competition(scores) and ranks[1] == ranks[3]
    assert sorted(ranks) in ([1, 1, 3, 4], [1, 2, 2, 4], [1, 2, 3, 3])
    assert blender.rank(["q"], [["only"]]).tolist() == [[1]]
    assert blender.rank(["q"], [["only"]], return_scores=True).tolist() == [[0.0]]


def test_rank_source_is_instruction_then_input(blender: Blender):
    with_instr = blender.rank(["world"], [CANDIDATES[0]], ["Say hello to the "], return_scores=True)
    joined = blender.rank(["Say hello to the world"], [CANDIDATES[0]], return_scores=True)
    np.testing.assert_array_equal(with_instr, joined)


def test_rank_batch_size_does_not_change_results(blender: Blender):
    one = blender.rank(INPUTS, CANDIDATES, return_scores=True, batch_size=1)
    many = blender.rank(INPUTS, CANDIDATES, return_scores=True, batch_size=64)
    np.testing.assert_allclose(one, many, atol=ATOL)


def test_rank_length_kwargs(blender: Blender, tiny_pairrm):
    cands = [[LONG + " a", "b " + LONG, LONG[:40]]]
    got = blender.rank([LONG], cands, return_scores=True, source_max_length=12, candidate_max_length=6)
    want = expected_scores(tiny_pairrm, LONG, cands[0], source_max_length=12, candidate_max_length=6)
    np.testing.assert_allclose(got[0], want, atol=ATOL)
    with pytest.raises(TypeError, match="source_maxlength"):
        blender.rank(INPUTS, CANDIDATES, source_maxlength=12)


@pytest.mark.parametrize(
    ("inputs", "candidates"),
    [(["a", "b"], [["x", "y"]]), (["a"], [[]]), (["a", "b"], [["x", "y"], ["z"]])],
)
def test_rank_rejects_non_rectangular_input(blender: Blender, inputs, candidates):
    with pytest.raises(ValueError):
        blender.rank(inputs, candidates)


# ----------------------------------------------------------------------------- compare


def test_compare_modes_and_orientation(blender: Blender, tiny_pairrm):
    a, b = ["hi!", "I hate you!"], ["f**k off!", "I love you, too!"]
    inputs = ["hello!", "I love you!"]
    ab = np.array([logit(tiny_pairrm, s, x, y) for s, x, y in zip(inputs, a, b, strict=False)])
    ba = np.array([logit(tiny_pairrm, s, y, x) for s, x, y in zip(inputs, a, b, strict=False)])
    got_ab = blender.compare(inputs, a, b, mode="[A,B]", return_logits=True)
    got_ba = blender.compare(inputs, a, b, mode="[B,A]", return_logits=True)
    combined = blender.compare(inputs, a, b, return_logits=True)
    np.testing.assert_allclose(got_ab, ab, atol=ATOL)
    np.testing.assert_allclose(got_ba, ba, atol=ATOL)  # not re-oriented: > 0 means B is better
    np.testing.assert_allclose(combined, ab - ba, atol=ATOL)
    assert combined.dtype == np.float32 and got_ab.dtype == np.float32
    swapped = blender.compare(inputs, b, a, return_logits=True)
    np.testing.assert_array_equal(swapped, -combined)  # exactly antisymmetric
    np.testing.assert_array_equal(blender.compare(inputs, a, b), combined > 0)
    np.testing.assert_array_equal(blender.compare(inputs, a, b, mode="[B,A]"), got_ba > 0)


def test_compare_combined_equals_the_two_candidate_rank_difference(blender: Blender):
    # The original computed the default mode as rank scores s_A - s_B; it is the same number.
    a, b = ["hi!", "I hate you!"], ["f**k off!", "I love you, too!"]
    scores = blender.rank(INPUTS, [[x, y] for x, y in zip(a, b, strict=False)], return_scores=True)
    combined = blender.compare(INPUTS, a, b, return_logits=True)
    np.testing.assert_allclose(combined, scores[:, 0] - scores[:, 1], atol=ATOL)


def test_compare_tie_is_false_and_modes_are_validated(blender: Blender):
    assert blender.compare(["q"], ["same"], ["same"], return_logits=True).tolist() == [0.0]
    assert blender.compare(["q"], ["same"], ["same"]).tolist() == [False]
    with pytest.raises(ValueError, match="unknown compare mode"):
        blender.compare(["q"], ["a"], ["b"], mode="[A,B]+[B,A] ")
    with pytest.raises(ValueError):
        blender.compare(["q", "r"], ["a"], ["b"])
    with pytest.raises(TypeError):
        blender.compare(["q"], ["a"], ["b"], source_max_length=8)  # no kwargs, as the original


# ----------------------------------------------------------------------------- rank_with_ref


def test_pick_references():
    cands = [["bb", "a", "cccc", "dd", "eee"], ["bb", "a", "cccc", "dd"], ["ab", "cd"]]
    assert pick_references(cands, "longest") == ["cccc", "cccc", "ab"]
    assert pick_references(cands, "shortest") == ["a", "a", "ab"]
    assert pick_references(cands, "median_length") == ["dd", "dd", "cd"]  # index n//2, stable
    assert pick_references(cands, "first") == ["bb", "bb", "ab"]
    assert pick_references(cands, "last") == ["eee", "dd", "cd"]
    with pytest.raises(ValueError, match="ref_mode"):
        pick_references(cands, "middle")


@pytest.mark.parametrize("ref_mode", ["longest", "shortest", "median_length", "first", "last"])
def test_rank_with_ref_scores(blender: Blender, tiny_pairrm, ref_mode: str):
    scores = blender.rank_with_ref(INPUTS, CANDIDATES, return_scores=True, ref_mode=ref_mode)
    assert scores.dtype == np.float64 and scores.shape == (2, 3)
    refs = pick_references(CANDIDATES, ref_mode)
    for i, (source, cands) in enumerate(zip(INPUTS, CANDIDATES, strict=False)):
        for j, cand in enumerate(cands):
            if cand == refs[i]:
                assert scores[i, j] == 0.0  # exactly
            else:  # > 0: the candidate beats the reference
                want = logit(tiny_pairrm, source, cand, refs[i]) - logit(tiny_pairrm, source, refs[i], cand)
                assert scores[i, j] == pytest.approx(want, abs=ATOL)
    ranks = blender.rank_with_ref(INPUTS, CANDIDATES, ref_mode=ref_mode)
    assert ranks.dtype == np.int32
    assert ranks.tolist() == [competition(row) for row in scores]


def test_rank_with_ref_explicit_references_and_readme_mode(blender: Blender, tiny_pairrm):
    refs = ["a totally external reference answer", "me too"]
    scores = blender.rank_with_ref(INPUTS, CANDIDATES, return_scores=True, ref_candidates=refs)
    want = [[logit(tiny_pairrm, s, c, r) - logit(tiny_pairrm, s, r, c) for c in cands]
            for s, cands, r in zip(INPUTS, CANDIDATES, refs, strict=False)]
    np.testing.assert_allclose(scores, want, atol=ATOL)
    # README: mode="longest" (compat: a reference mode given as `mode`).
    readme = blender.rank_with_ref(INPUTS, CANDIDATES, return_scores=True, batch_size=2, mode="longest")
    np.testing.assert_array_equal(
        readme, blender.rank_with_ref(INPUTS, CANDIDATES, return_scores=True, batch_size=2))
    shortest = blender.rank_with_ref(INPUTS, CANDIDATES, return_scores=True, mode="shortest")
    np.testing.assert_array_equal(
        shortest, blender.rank_with_ref(INPUTS, CANDIDATES, return_scores=True, ref_mode="shortest"))
    with pytest.raises(ValueError, match="conflicting"):
        blender.rank_with_ref(INPUTS, CANDIDATES, ref_mode="first", mode="last")
    with pytest.raises(ValueError):
        blender.rank_with_ref(INPUTS, CANDIDATES, ref_candidates=["only one"])


def test_rank_with_ref_single_order_mode_keeps_the_bias_term(blender: Blender, tiny_pairrm):
    scores = blender.rank_with_ref(["q"], [["short", "a longer answer"]], return_scores=True,
                                   ref_mode="first", mode="[A,B]")
    assert scores[0, 0] == pytest.approx(-logit(tiny_pairrm, "q", "short", "short"), abs=ATOL)
    assert scores[0, 1] == pytest.approx(-logit(tiny_pairrm, "q", "short", "a longer answer"), abs=ATOL)


# ----------------------------------------------------------------------------- conversations


def _conv(user1: str, reply1: str, user2: str, reply2: str, upper: bool = True) -> list[dict[str, str]]:
    u, a = ("USER", "ASSISTANT") if upper else ("user", "assistant")
    return [{"role": u, "content": user1}, {"role": a, "content": reply1},
            {"role": u, "content": user2}, {"role": a, "content": reply2}]


def test_conversation_texts_are_the_exact_template():
    conv_a, conv_b = _conv("hello", "hi", "how are you?", "fine"), _conv("hello", "go away", "how are you?", "bad")
    instructions, inputs, cand_a, cand_b = conversation_texts([conv_a], [conv_b])
    assert instructions == [
        "Finish the following coversation in each i-th turn by filling in <Response i> with your response."
    ]
    assert inputs == ["USER: hello\nAssistant: <Response 1>\nUSER: how are you?\nAssistant: <Response 2>"]
    assert cand_a == ["<Response 1>: hi\n<Response 2>: fine"]
    assert cand_b == ["<Response 1>: go away\n<Response 2>: bad"]


def test_compare_conversations_scores_the_template(blender: Blender, tiny_pairrm):
    conv_a, conv_b = _conv("hello", "hi", "how are you?", "fine"), _conv("hello", "go away", "how are you?", "bad")
    got = blender.compare_conversations([conv_a], [conv_b], return_logits=True, mode="[A,B]")
    source = (CONVERSATION_INSTRUCTION
              + "USER: hello\nAssistant: <Response 1>\nUSER: how are you?\nAssistant: <Response 2>")
    want = logit(tiny_pairrm, source, "<Response 1>: hi\n<Response 2>: fine",
                 "<Response 1>: go away\n<Response 2>: bad")
    assert got[0] == pytest.approx(want, abs=ATOL)
    lower = blender.compare_conversations(
        [_conv("hello", "hi", "how are you?", "fine", upper=False)],
        [_conv("hello", "go away", "how are you?", "bad", upper=False)], return_logits=True)
    np.testing.assert_array_equal(lower, blender.compare_conversations([conv_a], [conv_b], return_logits=True))


@pytest.mark.parametrize(
    "conv_b",
    [
        _conv("hello", "x", "something else?", "y"),  # different USER text
        _conv("hello", "x", "how are you?", "y")[:3],  # odd number of messages
        [{"role": "ASSISTANT", "content": "x"}, {"role": "USER", "content": "hello"}],  # roles swapped
        [{"role": "system", "content": "be nice"}, {"role": "USER", "content": "hello"}],
    ],
)
def test_compare_conversations_validation(blender: Blender, conv_b: list[dict[str, str]]):
    with pytest.raises(ValueError):
        blender.compare_conversations([_conv("hello", "hi", "how are you?", "fine")], [conv_b])


# ----------------------------------------------------------------------------- best / worst of n


def _simulate_bubble(pairrm: PairRM, source: str, cands: list[str], perm: list[int], worst: bool) -> list[int]:
    """Spec 1.8 with independent single-pair logits: [selected, losers in elimination order]."""
    carried, losers = perm[0], []
    for nxt in perm[1:]:
        d = logit(pairrm, source, cands[carried], cands[nxt]) - logit(pairrm, source, cands[nxt], cands[carried])
        take_next = d >= 0 if worst else d <= 0
        losers.append(carried if take_next else nxt)
        carried = nxt if take_next else carried
    return [carried, *losers]


@pytest.mark.parametrize("worst", [False, True])
def test_bubble_selection_follows_the_seeded_permutation(blender: Blender, tiny_pairrm, worst: bool):
    cands = [CANDIDATES[0] + ["fine thanks, and you?"], CANDIDATES[1] + ["whatever"]]
    torch.manual_seed(7)
    perm = torch.randperm(4).tolist()  # one permutation for the whole batch, as the original
    orders = [_simulate_bubble(tiny_pairrm, s, c, perm, worst) for s, c in zip(INPUTS, cands, strict=False)]
    select = blender.get_worst_of_n if worst else blender.get_best_of_n
    torch.manual_seed(7)
    got_all = select(INPUTS, cands, return_all=True)
    assert got_all == [[c[k] for k in order] for c, order in zip(cands, orders, strict=False)]
    torch.manual_seed(7)
    assert select(INPUTS, cands) == [row[0] for row in got_all]


def test_bubble_uses_2_n_minus_1_comparisons_and_ties_go_to_the_later(blender: Blender):
    rows: list[int] = []
    hook = blender.ranker.model.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[0]))
    try:
        blender.get_best_of_n(INPUTS, [c + ["x", "y"] for c in CANDIDATES], batch_size=8)
    finally:
        hook.remove()
    assert sum(rows) == 2 * (5 - 1) * len(INPUTS)
    tied = ["hello world", "hello[SEP]world"]  # identical to the model: d == 0 exactly
    for seed in range(4):
        torch.manual_seed(seed)
        later = tied[torch.randperm(2).tolist()[1]]
        for select in (blender.get_best_of_n, blender.get_worst_of_n):
            torch.manual_seed(seed)
            assert select(["q"], [tied]) == [later]


def test_full_selection_uses_ranks(blender: Blender, tiny_pairrm):
    scores = [expected_scores(tiny_pairrm, s, c) for s, c in zip(INPUTS, CANDIDATES, strict=False)]
    best = blender.get_best_of_n(INPUTS, CANDIDATES, pairrm_cmp_type="full", return_all=True)
    worst = blender.get_worst_of_n(INPUTS, CANDIDATES, pairrm_cmp_type="full", return_all=True)
    for k in range(2):
        by_score = [CANDIDATES[k][j] for j in np.argsort(-scores[k], kind="stable")]
        assert best[k] == by_score and worst[k] == by_score[::-1]
    assert blender.get_best_of_n(INPUTS, CANDIDATES, pairrm_cmp_type="full") == [b[0] for b in best]
    with pytest.raises(ValueError, match="pairrm_cmp_type"):
        blender.get_best_of_n(INPUTS, CANDIDATES, pairrm_cmp_type="tournament")


def hand_wins(pairrm: PairRM, source: str, cands: list[str]) -> list[int]:
    """max_wins counted pair by pair (spec 1.7): i wins (i, j) when logit(i, j) > 0 and (k, i)
    when logit(k, i) < 0; every ordered pair is run, identical texts included."""
    n = len(cands)
    wins = [0] * n
    for i in range(n):
        for j in range(n):
            if i != j:
                value = logit(pairrm, source, cands[i], cands[j])
                wins[i] += value > 0
                wins[j] += value < 0
    return wins


@pytest.mark.parametrize("cands", [CANDIDATES[0], CANDIDATES[1], ["bye!", "hi there", "bye!", "hm"]])
def test_max_wins_selection_ranks_by_pairs_won(blender: Blender, tiny_pairrm, cands):
    wins = np.array(hand_wins(tiny_pairrm, INPUTS[0], cands))
    ranks = np.array(competition(wins))
    best = blender.get_best_of_n([INPUTS[0]], [cands], pairrm_cmp_type="max_wins", return_all=True)
    worst = blender.get_worst_of_n([INPUTS[0]], [cands], pairrm_cmp_type="max_wins",
                                   return_all=True)
    assert best == [[cands[j] for j in np.argsort(ranks, kind="stable")]]
    assert worst == [[cands[j] for j in np.argsort(-ranks, kind="stable")]]
    assert blender.get_best_of_n([INPUTS[0]], [cands], pairrm_cmp_type="max_wins") == [best[0][0]]


def test_single_candidates_are_returned_without_a_model():
    b = Blender()  # no ranker needed, as in the original
    assert b.get_best_of_n(["q", "r"], [["a"], ["b"]]) == ["a", "b"]
    assert b.get_worst_of_n(["q", "r"], [["a"], ["b"]], return_all=True) == [["a"], ["b"]]


# ----------------------------------------------------------------------------- reward models


def _rm_logits(directory: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """One text-pair forward pass per (source, candidate): [CLS] source [SEP] candidate [SEP]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    out = []
    with torch.inference_mode():
        for source, cand in pairs:
            enc = tokenizer(source, cand, return_tensors="pt")
            out.append(float(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0, 0]))
    return np.array(out)


def test_pointwise_reward_model(tiny_deberta_rm_dir: Path):
    b = Blender()
    b.loadranker(str(tiny_deberta_rm_dir), device="cpu")
    instructions = ["Be kind. ", ""]
    sources = [i + x for i, x in zip(instructions, INPUTS, strict=False)]
    want = _rm_logits(tiny_deberta_rm_dir, [(s, c) for s, cands in zip(sources, CANDIDATES, strict=False) for c in cands])
    want = want.reshape(2, 3)
    scores = b.rank(INPUTS, CANDIDATES, instructions, return_scores=True)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, want, atol=ATOL)
    assert b.rank(INPUTS, CANDIDATES, instructions).tolist() == [competition(r) for r in scores]
    a, c = [x[0] for x in CANDIDATES], [x[1] for x in CANDIDATES]
    for mode in ("[A,B]", "[B,A]", "[A,B]+[B,A]"):  # score(A) - score(B): modes do not matter
        got = b.compare(INPUTS, a, c, instructions, return_logits=True, mode=mode)
        np.testing.assert_allclose(got, want[:, 0] - want[:, 1], atol=ATOL)
    rewards = b.rank_with_ref(INPUTS, CANDIDATES, instructions, return_scores=True, ref_mode="first")
    assert rewards[:, 0].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(rewards, want - want[:, :1], atol=ATOL)
    best = b.get_best_of_n(INPUTS, CANDIDATES, instructions)  # bubble is PairRM-only: full ranking
    assert best == [cands[int(np.argmax(w))] for cands, w in zip(CANDIDATES, want, strict=False)]


def test_reward_model_detection(tiny_deberta_rm_dir: Path, tiny_backbone_dir: Path, tmp_path: Path):
    # The original recognised OpenAssistant's model by its name, whatever its config says.
    named = tmp_path / "OpenAssistant" / "reward-model-deberta-v3-large-v2"
    shutil.copytree(tiny_deberta_rm_dir, named)
    config = json.loads((named / "config.json").read_text())
    config.pop("architectures", None)
    (named / "config.json").write_text(json.dumps(config))
    b = Blender()
    b.loadranker(str(named), device="cpu")
    assert b.rank(INPUTS, CANDIDATES).shape == (2, 3)
    with pytest.raises(ValueError, match="not supported"):
        Blender().loadranker(str(tiny_backbone_dir), device="cpu")  # a bare backbone
    starling = tmp_path / "berkeley-nest" / "Starling-RM-7B-alpha"
    shutil.copytree(tiny_deberta_rm_dir, starling)
    with pytest.raises(ValueError, match="not supported"):
        Blender().loadranker(str(starling), device="cpu")


# ----------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def tiny_lm(tiny_pairrm_hf_dir: Path) -> tuple[Any, Any]:
    """A random 1-layer Llama over the tiny SentencePiece vocabulary, with a chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_pairrm_hf_dir))
    tokenizer.padding_side = "left"
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # as causal-LM tokenizers
    tokenizer.model_max_length = 96
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.max_length = 96
    return model, tokenizer


class _Recorder:
    """Delegates to ``target`` and records the arguments of ``method`` calls."""

    def __init__(self, target: Any, method: str) -> None:
        self._target, self._method, self.calls = target, method, []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name != self._method:
            return value

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((args, kwargs))
            return value(*args, **kwargs)

        return record

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self._target(*args, **kwargs)


def test_n_generate_shapes_prompts_and_sampling_defaults(blender: Blender, tiny_lm):
    model, tokenizer = tiny_lm
    spy_model, spy_tok = _Recorder(model, "generate"), _Recorder(tokenizer, "__call__")
    samples = blender.n_generate(spy_model, spy_tok, ["one", "two", "three"], ["Do it", "Do", "Go"],
                                 n=3, batch_size=2, max_new_tokens=5)
    assert len(samples) == 3 and all(len(s) == 3 and all(isinstance(t, str) for t in s) for s in samples)
    assert [c[0][0] for c in spy_tok.calls] == [["Do it\none", "Do\ntwo"], ["Go\nthree"]]
    kwargs = spy_model.calls[0][1]
    assert (kwargs["do_sample"], kwargs["top_p"], kwargs["temperature"]) == (True, 1.0, 0.7)
    assert (kwargs["num_return_sequences"], kwargs["max_new_tokens"]) == (3, 5)
    assert "max_length" not in kwargs
    spy_model.calls.clear()
    blender.n_generate(spy_model, tokenizer, ["x"], n=2, sampling_mode="top_k_sampling", temperature=1.3)
    kwargs = spy_model.calls[0][1]
    assert (kwargs["top_k"], kwargs["temperature"], kwargs["max_length"]) == (50, 1.3, 96)
    with pytest.raises(ValueError, match="sampling_mode"):
        blender.n_generate(model, tokenizer, ["x"], sampling_mode="beam")


def test_n_generate_cuts_the_prompt(blender: Blender, tiny_lm):
    model, tokenizer = tiny_lm
    prompts = ["a long prompt about attention", "short"]
    torch.manual_seed(3)
    samples = blender.n_generate(model, tokenizer, prompts, n=2, max_new_tokens=4, batch_size=2)
    enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True)
    torch.manual_seed(3)
    out = model.generate(**enc, do_sample=True, top_p=1.0, temperature=0.7, max_new_tokens=4,
                         num_return_sequences=2)
    want = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert samples == [want[0:2], want[2:4]]


def test_best_of_n_generate_ranks_the_samples(blender: Blender, tiny_lm):
    model, tokenizer = tiny_lm
    torch.manual_seed(11)
    samples = blender.n_generate(model, tokenizer, INPUTS, n=4, max_new_tokens=6)
    expected = blender.get_best_of_n(INPUTS, samples, return_all=True)
    torch.manual_seed(11)
    got = blender.best_of_n_generate(model, tokenizer, INPUTS, n=4, max_new_tokens=6, return_all=True)
    assert got == expected and all(sorted(g) == sorted(s) for g, s in zip(got, samples, strict=False))


# ----------------------------------------------------------------------------- README snippets


def test_readme_snippets_run_unchanged(tiny_pairrm_hf_dir: Path, tiny_lm):
    llm_blender = ensemble  # the only change: `import ensemble as llm_blender`
    blender = llm_blender.Blender()
    blender.loadranker(str(tiny_pairrm_hf_dir))  # load ranker checkpoint

    inputs = ["hello, how are you!", "I love you!"]
    candidates_texts = [["get out!", "hi! I am fine, thanks!", "bye!"],
                        ["I love you too!", "I hate you!", "Thanks! You're a good guy!"]]
    ranks = blender.rank(inputs, candidates_texts, return_scores=False, batch_size=1)
    assert ranks.dtype == np.int32 and ranks.shape == (2, 3)

    inputs = ["hello!", "I love you!"]
    candidates_A = ["hi!", "I hate you!"]
    candidates_B = ["f**k off!", "I love you, too!"]
    comparison_results = blender.compare(inputs, candidates_A, candidates_B)
    assert comparison_results.dtype == np.bool_ and comparison_results.shape == (2,)

    inputs = ["hello, how are you!", "I love you!"]
    rewards = blender.rank_with_ref(inputs, candidates_texts, return_scores=True, batch_size=2, mode="longest")
    assert rewards.shape == (2, 3) and rewards[0][1] == 0.0  # the longest is the reference
    ref_candidates = [_c[0] for _c in candidates_texts]
    rewards = blender.rank_with_ref(inputs, candidates_texts, return_scores=True, batch_size=2,
                                    ref_candidates=ref_candidates)
    assert rewards[:, 0].tolist() == [0.0, 0.0]

    conv1 = [{"content": "hello", "role": "USER"}, {"content": "[assistant1's response 1]", "role": "ASSISTANT"}]
    conv2 = [{"content": "hello", "role": "USER"}, {"content": "[assistant2's response 1]", "role": "ASSISTANT"}]
    comparison_results = blender.compare_conversations([conv1], [conv2])
    assert comparison_results.shape == (1,)

    model, tokenizer = tiny_lm  # stand-ins for zephyr-7b-beta
    system_message = {"role": "system", "content": "You are a friendly chatbot."}
    inputs = ["can you tell me a joke about OpenAI?"]
    messages = [[system_message, {"role": "user", "content": _input}] for _input in inputs]
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    outputs = blender.best_of_n_generate(model, tokenizer, prompts, n=10)
    assert len(outputs) == 1 and isinstance(outputs[0], str)
