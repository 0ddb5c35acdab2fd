"""LLM-Blender's ``Blender`` API on blendgate's PairRM: change the import, keep the code.

``import ensemble as llm_blender`` (or ``from ensemble import Blender``) runs code written for
``llm_blender.Blender``: ``loadranker``, ``rank``, ``compare``, ``rank_with_ref``,
``compare_conversations``, ``get_best_of_n``/``get_worst_of_n`` and
``n_generate``/``best_of_n_generate`` take the original argument names and defaults and return
the original orientations, shapes and dtypes (spec: ``shared/reference/llm-blender-spec.md``
section 3). The model, tokenization and scoring live in ``ensemble.rankers.pairrm``; this module
only maps the API onto them. Importing it imports torch; ``import ensemble`` does not.

Deliberate differences from llm-blender 0.0.2 (each one documented where it happens):

- Device: ``loadranker`` defaults to ``"cuda"`` when available, else ``"cpu"`` (the original
  always defaulted to ``"cuda"``). Half precision follows the original rule (``fp16`` true and a
  CUDA/MPS device), including ``"cuda:1"``-style strings.
- Batching: every ordered pair of the call is pooled and run ``batch_size`` pair-rows per forward
  pass, and truncation is per example (model-card recipe). The original truncated per batch of
  items, so its results equal ours at ``batch_size=1`` (and whenever nothing is truncated).
- Validation raises ``ValueError``/``TypeError`` instead of ``assert``: unknown ``compare``
  modes, unknown ``pairrm_cmp_type`` values and unknown keyword arguments are rejected instead of
  silently falling back. Using a method before ``loadranker`` raises ``RuntimeError``.
- ``pairrm_cmp_type="max_wins"`` ranks by pairs won, LLM-Blender's "max_wins" policy (spec 1.7);
  the original's ``get_best_of_n`` treated every value but "bubble" as "full".
- Single-order ``compare`` logits are float32 on every device (the original returned the model
  dtype, float16 on CUDA).
- Pointwise reward models: any one-label ``AutoModelForSequenceClassification`` checkpoint
  loads (OpenAssistant's DeBERTa reward model included, by name or by its config); the custom
  Starling-RM and UltraRM heads of the original are not supported. Texts are cut by the tokenizer
  (``longest_first``) instead of the original's encode/decode round trip: equal unless truncated.
- ``disable_tqdm`` is accepted for compatibility; this API draws no progress bars.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ensemble.checkpoints import resolve_dir
from ensemble.compat.fusion import FusionMixin
from ensemble.config import RewardModelRankerConfig
from ensemble.rankers.pairrm import (
    PairRM,
    bubble_select,
    full_matrices,
    load_pairrm,
    pair_logits,
    ranks_from_scores,
    scores_from_matrix,
    wins_from_matrix,
)
from ensemble.rankers.pairrm.inputs import CONVERSATION_INSTRUCTION, join_source
from ensemble.rankers.reward_model import RewardModel, encode, load_reward_model, reward_scores
from ensemble.types import ChatMessage

COMBINED_MODE = "[A,B]+[B,A]"
COMPARE_MODES = ("[A,B]", "[B,A]", COMBINED_MODE)
REF_MODES = ("longest", "shortest", "median_length", "first", "last")
CMP_TYPES = ("bubble", "full", "max_wins")
SAMPLING_MODES = ("top_p_sampling", "top_k_sampling", None)
# loadranker keyword arguments that change behaviour (RankerConfig field names of the original).
# The original's four, plus blendgate's PairRM speed options ``attention`` and ``compile``.
RANKER_OPTIONS = ("cache_dir", "source_maxlength", "candidate_maxlength", "fp16", "attention",
                  "compile")
# rank()/rank_with_ref() keyword arguments (note the underscores, unlike loadranker's).
LENGTH_OPTIONS = ("source_max_length", "candidate_max_length")
# Reward models llm-blender 0.0.2 recognised by name suffix, and whether this API loads them.
OPENASSISTANT_RM = "OpenAssistant/reward-model-deberta-v3-large-v2"
UNSUPPORTED_RMS = ("berkeley-nest/Starling-RM-7B-alpha", "openbmb/UltraRM-13b")

Limits = dict[str, int]


# ----------------------------------------------------------------------------- argument checks


def _sources(inputs: Sequence[str], instructions: Sequence[str] | None) -> list[str]:
    """instruction + input with no separator (spec 1.3), one per input."""
    if instructions is None:
        return [join_source(None, x) for x in inputs]
    if len(instructions) != len(inputs):
        raise ValueError(f"got {len(instructions)} instructions for {len(inputs)} inputs")
    return [join_source(i, x) for i, x in zip(instructions, inputs, strict=False)]


def _check_rectangular(inputs: Sequence[str], candidates: Sequence[Sequence[str]]) -> int:
    """The original's three assertions; returns n, the number of candidates per input."""
    if len(inputs) != len(candidates):
        raise ValueError(f"got {len(inputs)} inputs but {len(candidates)} candidate lists")
    if any(len(c) == 0 for c in candidates):
        raise ValueError("each input must have at least one candidate")
    n = len(candidates[0]) if candidates else 0
    if any(len(c) != n for c in candidates):
        raise ValueError("every input must have the same number of candidates")
    return n


def _check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _check_mode(mode: str) -> str:
    """Unknown modes raise (the original silently used the combined mode for any other string)."""
    if mode not in COMPARE_MODES:
        raise ValueError(f"unknown compare mode {mode!r}; use one of {COMPARE_MODES}")
    return mode


def _length_limits(options: Mapping[str, Any], where: str) -> Limits:
    """``source_max_length``/``candidate_max_length`` overrides; any other key is a TypeError."""
    unknown = sorted(set(options) - set(LENGTH_OPTIONS))
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword arguments {unknown}")
    return {k: int(v) for k, v in options.items() if v is not None}


# ----------------------------------------------------------------------------- pure helpers


def pick_references(candidates: Sequence[Sequence[str]], ref_mode: str) -> list[str]:
    """The reference candidate of each input for ``rank_with_ref`` (lengths in characters).

    "longest"/"shortest" take the first maximum/minimum; "median_length" the element at index
    n // 2 of a stable sort by length (upper median for even n); "first"/"last" by position.
    """
    if ref_mode == "longest":
        return [max(c, key=len) for c in candidates]
    if ref_mode == "shortest":
        return [min(c, key=len) for c in candidates]
    if ref_mode == "median_length":
        return [sorted(c, key=len)[len(c) // 2] for c in candidates]
    if ref_mode == "first":
        return [c[0] for c in candidates]
    if ref_mode == "last":
        return [c[-1] for c in candidates]
    raise ValueError(f"unknown ref_mode {ref_mode!r}; use one of {REF_MODES}")


def _ref_mode_and_compare_mode(ref_mode: str, options: dict[str, Any]) -> tuple[str, str]:
    """Split ``rank_with_ref``'s ``mode`` keyword into a reference mode or a compare mode.

    The original forwarded ``**rank_kwargs`` to ``compare``, so the README's
    ``mode="longest"`` landed in compare's mode (and fell back to the combined mode) while the
    reference stayed "longest" by default. Here a reference-mode name passed as ``mode`` selects
    the reference (what the README means; identical results for "longest"), and a compare-mode
    name selects the compare mode, as in the original.
    """
    mode = options.pop("mode", COMBINED_MODE)
    if mode in REF_MODES:
        if ref_mode not in ("longest", mode):
            raise ValueError(f"conflicting reference modes: ref_mode={ref_mode!r}, mode={mode!r}")
        return mode, COMBINED_MODE
    return ref_mode, _check_mode(mode)


def _role(message: Mapping[str, Any]) -> str:
    return str(message["role"]).upper()


def _check_conversation(conversation: Sequence[Mapping[str, Any]]) -> None:
    """Alternating USER/ASSISTANT messages, even count (roles case-insensitive, unlike 0.0.2)."""
    if len(conversation) % 2:
        raise ValueError("each conversation must have an even number of messages")
    for k, message in enumerate(conversation):
        expected = "USER" if k % 2 == 0 else "ASSISTANT"
        if _role(message) != expected:
            raise ValueError(f"message {k} must have role {expected!r}, got {message['role']!r}")


def conversation_texts(
    conversations_a: Sequence[Sequence[Mapping[str, Any]]],
    conversations_b: Sequence[Sequence[Mapping[str, Any]]],
) -> tuple[list[str], list[str], list[str], list[str]]:
    """(instructions, inputs, candidates_a, candidates_b) of ``compare_conversations`` (spec 3.5).

    Input: per turn k (1-based) ``"USER: " + user + "\\nAssistant: <Response k>"``, turns joined
    by a newline. Candidate: per turn ``"<Response k>: " + assistant``, joined by a newline. The
    instruction is the fixed LLM-Blender text, typo ("coversation") included.
    """
    if len(conversations_a) != len(conversations_b):
        raise ValueError("conversations_a and conversations_b must have the same length")
    for conv_a, conv_b in zip(conversations_a, conversations_b, strict=False):
        _check_conversation(conv_a)
        _check_conversation(conv_b)
        if len(conv_a) != len(conv_b):
            raise ValueError("paired conversations must have the same number of turns")
        if any(conv_a[k]["content"] != conv_b[k]["content"] for k in range(0, len(conv_a), 2)):
            raise ValueError("paired conversations must have identical USER messages")
    inputs = [
        "\n".join(
            f"USER: {conv[k]['content']}\nAssistant: <Response {k // 2 + 1}>"
            for k in range(0, len(conv), 2)
        )
        for conv in conversations_a
    ]
    cand_a, cand_b = (
        [
            "\n".join(f"<Response {k // 2 + 1}>: {conv[k]['content']}" for k in range(1, len(conv), 2))
            for conv in convs
        ]
        for convs in (conversations_a, conversations_b)
    )
    return [CONVERSATION_INSTRUCTION] * len(inputs), inputs, cand_a, cand_b


def _pick(candidates: Sequence[Sequence[str]], order: np.ndarray, return_all: bool) -> list[Any]:
    """Candidates by index rows ``order`` [N, k]: the first of each row, or whole rows."""
    if return_all:
        return [[c[int(k)] for k in row] for c, row in zip(candidates, order, strict=False)]
    return [c[int(row[0])] for c, row in zip(candidates, order, strict=False)]


# ----------------------------------------------------------------------------- the API


class Blender(FusionMixin):
    """The llm-blender ``Blender`` ranking API (``loadranker`` first, then any method)."""

    def __init__(self) -> None:
        self.ranker: PairRM | RewardModel | None = None
        self.ranker_path: str | None = None
        self.device: str | None = None

    # ------------------------------------------------------------------------- loading

    def loadranker(self, ranker_path: str, device: str | torch.device | None = None,
                   **kwargs: Any) -> None:
        """Load a PairRM checkpoint: a hub id, a cached repo or a local directory.

        Both public layouts load (``llm-blender/PairRM`` and ``llm-blender/PairRM-hf``); the
        original's download location ``<cache_dir>/<ranker_path>`` is also looked up.
        ``device`` (a string or a ``torch.device``, such as TRL's ``Accelerator().device``)
        defaults to "cuda" when available, else "cpu" (the original: always "cuda").
        ``kwargs``: ``cache_dir``, ``source_maxlength``, ``candidate_maxlength`` and ``fp16``
        (default true: float16 on CUDA/MPS, float32 elsewhere, as the original); for PairRM also
        ``attention`` ("sdpa" default, or "eager") and ``compile`` (default false), see
        :func:`~ensemble.rankers.pairrm.load_pairrm`; other keys raise ``TypeError``.
        """
        unknown = sorted(set(kwargs) - set(RANKER_OPTIONS))
        if unknown:
            raise TypeError(f"loadranker() got unsupported options {unknown}; use {RANKER_OPTIONS}")
        cache_dir = kwargs.get("cache_dir")
        cache_dir = None if cache_dir is None else str(cache_dir)
        device = str(device) if device else ("cuda" if torch.cuda.is_available() else "cpu")
        half = bool(kwargs.get("fp16", True)) and torch.device(device).type in ("cuda", "mps")
        dtype: Literal["float16", "float32"] = "float16" if half else "float32"
        # One resolver for every model file: local dir, <cache_dir>/<id>, the HF cache, the hub.
        directory = resolve_dir(str(ranker_path), cache_dir)
        if _is_pairrm_dir(directory):
            speed = {key: kwargs[key] for key in ("attention", "compile") if key in kwargs}
            self.ranker = load_pairrm(str(directory), device=device, dtype=dtype,
                                      cache_dir=cache_dir, **speed)
            if kwargs.get("source_maxlength"):
                self.ranker.source_max_length = int(kwargs["source_maxlength"])
            if kwargs.get("candidate_maxlength"):
                self.ranker.candidate_max_length = int(kwargs["candidate_maxlength"])
        else:
            _check_reward_model_dir(directory, str(ranker_path))
            max_length = int(kwargs.get("source_maxlength") or 1024) + int(
                kwargs.get("candidate_maxlength") or 1024)
            self.ranker = load_reward_model(RewardModelRankerConfig(
                checkpoint=str(directory), cache_dir=cache_dir, device=device, dtype=dtype,
                max_length=max_length, max_batch_size=8, batch_wait_ms=0.0, threads=1,
            ))
        self.ranker_path, self.device = str(ranker_path), device

    def _loaded(self) -> PairRM | RewardModel:
        if self.ranker is None:
            raise RuntimeError("no ranker loaded; call loadranker() first")
        return self.ranker

    def _pairrm(self) -> PairRM:
        ranker = self._loaded()
        if not isinstance(ranker, PairRM):
            raise TypeError("this operation needs a pairwise ranker (PairRM)")
        return ranker

    # ------------------------------------------------------------------------- ranking

    def rank(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        return_scores: bool = False,
        batch_size: int = 8,
        disable_tqdm: bool = False,
        **rank_kwargs: Any,
    ) -> np.ndarray:
        """Ranks int32 [N, n] (1 = best, ties share the best rank) or scores float32 [N, n].

        Score i = mean over j of logit(i, j) - logit(j, i) (each row sums to 0). ``rank_kwargs``:
        ``source_max_length``/``candidate_max_length`` override the checkpoint's limits.
        """
        _check_rectangular(inputs, candidates)
        limits = _length_limits(rank_kwargs, "rank")
        scores = self._scores(_sources(inputs, instructions), candidates, batch_size, limits)
        return scores if return_scores else ranks_from_scores(scores)

    def _scores(
        self, sources: list[str], candidates: Sequence[Sequence[str]], batch_size: int, limits: Limits
    ) -> np.ndarray:
        """float32 scores [N, n]: the reward model's, or PairRM's "max_logits" means."""
        ranker = self._loaded()
        if isinstance(ranker, RewardModel):
            flat = _pointwise(ranker, [(s, c) for s, cands in zip(sources, candidates, strict=False) for c in cands],
                              _check_batch_size(batch_size))
            return flat.reshape(len(sources), -1)  # [N, n]
        return scores_from_matrix(self._matrices(sources, candidates, batch_size, limits))

    def _matrices(
        self, sources: list[str], candidates: Sequence[Sequence[str]], batch_size: int, limits: Limits
    ) -> np.ndarray:
        """PairRM's full matrices [N, n, n], computed over each item's DISTINCT texts.

        Identical candidates share one matrix row/column, so they tie exactly (the original's
        separate passes gave bit-identical logits; rows of one pooled batch need not) and cost
        nothing extra; the pair of duplicates reads the diagonal, 0: it contributes
        M[i,j] - M[j,i] = 0 to "max_logits", as in the original.
        """
        uniques = [list(dict.fromkeys(c)) for c in candidates]
        matrices = full_matrices(
            self._pairrm(), sources, uniques, max_batch_pairs=_check_batch_size(batch_size),
            **limits,
        )  # per item [u, u]
        expanded = []
        for cands, unique, m in zip(candidates, uniques, matrices, strict=False):
            index = np.array([unique.index(c) for c in cands])  # [n]
            expanded.append(m[np.ix_(index, index)])  # [n, n]
        return np.stack(expanded)

    def _max_wins_ranks(
        self, inputs: Sequence[str], candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None, batch_size: int,
    ) -> np.ndarray:
        """int32 ranks [N, n] by pairs won (LLM-Blender's "max_wins", spec 1.7).

        A pair of identical candidates is not run (it reads 0 in :meth:`_matrices`); in the
        original its two orders give one equal logit x != 0, and whatever its sign, each copy
        wins exactly one of the two orders: that one win each is added back here.
        """
        matrix = self._matrices(_sources(inputs, instructions), candidates, batch_size, {})
        copies = np.array([[list(c).count(text) - 1 for text in c] for c in candidates])
        return ranks_from_scores(wins_from_matrix(matrix) + copies)

    def compare(
        self,
        inputs: Sequence[str],
        candidates_A: Sequence[str],
        candidates_B: Sequence[str],
        instructions: Sequence[str] | None = None,
        batch_size: int = 4,
        return_logits: bool = False,
        mode: str = COMBINED_MODE,
        disable_tqdm: bool = False,
    ) -> np.ndarray:
        """Is A better than B? bool [N] (``logit > 0``), or the float32 logits [N].

        Modes: "[A,B]" -> logit(A, B); "[B,A]" -> logit(B, A), NOT re-oriented (> 0 means B is
        better, as in the original); "[A,B]+[B,A]" (default) -> logit(A, B) - logit(B, A), which
        cancels position bias and is exactly antisymmetric. Other strings raise ``ValueError``.
        """
        if not len(inputs) == len(candidates_A) == len(candidates_B):
            raise ValueError("inputs, candidates_A and candidates_B must have the same length")
        logits = self._compare_logits(
            _sources(inputs, instructions), candidates_A, candidates_B,
            _check_mode(mode), _check_batch_size(batch_size), {},
        )
        return logits if return_logits else logits > 0

    def _compare_logits(
        self, sources: Sequence[str], lefts: Sequence[str], rights: Sequence[str],
        mode: str, batch_size: int, limits: Limits,
    ) -> np.ndarray:
        """float32 [N] logits of ``mode`` for (source, left=A, right=B) triples."""
        ranker = self._loaded()
        if isinstance(ranker, RewardModel):  # score(A) - score(B) whatever the mode
            flat = _pointwise(ranker, [*zip(sources, lefts, strict=False), *zip(sources, rights, strict=False)], batch_size)
            return (flat[: len(lefts)] - flat[len(lefts) :]).astype(np.float32)
        pairrm = ranker
        forward = list(zip(sources, lefts, rights, strict=False))
        backward = list(zip(sources, rights, lefts, strict=False))
        if mode == "[A,B]":
            return pair_logits(pairrm, forward, max_batch_pairs=batch_size, **limits)
        if mode == "[B,A]":
            return pair_logits(pairrm, backward, max_batch_pairs=batch_size, **limits)
        # One call over both orders: its forward passes depend only on the set of rows, which
        # swapping A and B leaves unchanged, and identical rows run once, so each difference is
        # exactly antisymmetric under the swap and exactly 0 when A and B read the same.
        both = pair_logits(pairrm, forward + backward, max_batch_pairs=batch_size, **limits)
        return (both[: len(forward)] - both[len(forward) :]).astype(np.float32)

    def rank_with_ref(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        return_scores: bool = False,
        batch_size: int = 8,
        ref_mode: str = "longest",
        ref_candidates: Sequence[str] | None = None,
        **rank_kwargs: Any,
    ) -> np.ndarray:
        """Rewards float64 [N, n] against one reference per input, or int32 ranks.

        Score = -compare(ref, candidate) = logit(cand, ref) - logit(ref, cand) in the default
        mode: > 0 means better than the reference, and a candidate equal to the reference gets
        exactly 0 (not computed). ``ref_candidates`` (one str per input) overrides ``ref_mode``.
        ``rank_kwargs``: ``mode`` (a compare mode, or a reference mode as the README writes it)
        and ``source_max_length``/``candidate_max_length`` (which the original rejected).
        """
        options = dict(rank_kwargs)
        ref_mode, mode = _ref_mode_and_compare_mode(ref_mode, options)
        limits = _length_limits(options, "rank_with_ref")
        n = _check_rectangular(inputs, candidates)
        if ref_candidates is None:
            refs = pick_references(candidates, ref_mode)
        elif len(ref_candidates) != len(inputs) or not all(isinstance(r, str) for r in ref_candidates):
            raise ValueError("ref_candidates must be one str per input")
        else:
            refs = list(ref_candidates)
        sources = _sources(inputs, instructions)
        # In the combined mode ref-vs-ref is exactly 0; single-order modes keep the bias term.
        todo = [(i, j) for i in range(len(inputs)) for j in range(n)
                if mode != COMBINED_MODE or candidates[i][j] != refs[i]]
        logits = self._compare_logits(
            [sources[i] for i, _ in todo], [refs[i] for i, _ in todo],
            [candidates[i][j] for i, j in todo], mode, _check_batch_size(batch_size), limits,
        )
        scores = np.zeros((len(inputs), n), dtype=np.float64)
        for (i, j), logit in zip(todo, logits, strict=False):
            scores[i, j] = -float(logit)
        return scores if return_scores else ranks_from_scores(scores)

    def compare_conversations(
        self,
        conversations_a: Sequence[Sequence[Mapping[str, Any]]],
        conversations_b: Sequence[Sequence[Mapping[str, Any]]],
        batch_size: int = 4,
        return_logits: bool = False,
        mode: str = COMBINED_MODE,
    ) -> np.ndarray:
        """``compare`` of two conversations sharing the user turns (template: spec 3.5).

        Messages are ``{"role", "content"}`` dicts alternating USER/ASSISTANT; roles are
        case-insensitive here ("user"/"assistant" as in OpenAI messages are accepted; the
        original accepted only upper case). No system messages.
        """
        instructions, inputs, cand_a, cand_b = conversation_texts(conversations_a, conversations_b)
        return self.compare(
            inputs, cand_a, cand_b, instructions, batch_size=batch_size,
            return_logits=return_logits, mode=mode,
        )

    # ------------------------------------------------------------------------- best of n

    def get_best_of_n(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        batch_size: int = 8,
    ) -> list[Any]:
        """Best candidate per input (list[str]), or with ``return_all`` list[list[str]].

        "bubble": one random pass (global torch RNG, one permutation per batch of ``batch_size``
        inputs, as the original), 2(n-1) comparisons, ties go to the later candidate;
        ``return_all`` gives [winner, losers in elimination order] (only the first is a ranking).
        "full": ``rank`` then candidates by ascending rank (ties: lower index first).
        "max_wins": the same full matrix, ranked by the number of ordered pairs each candidate
        wins (LLM-Blender's "max_wins" policy, spec 1.7), then as "full". Non-pairwise reward
        models ignore ``pairrm_cmp_type`` and rank pointwise, as in the original.
        """
        return self._select(inputs, candidates, instructions, pairrm_cmp_type, return_all,
                            batch_size, worst=False)

    def get_worst_of_n(
        self,
        inputs: Sequence[str],
        candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None = None,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        batch_size: int = 8,
    ) -> list[Any]:
        """Mirror of :meth:`get_best_of_n`: worst first (bubble ties carry the later candidate)."""
        return self._select(inputs, candidates, instructions, pairrm_cmp_type, return_all,
                            batch_size, worst=True)

    def _select(
        self, inputs: Sequence[str], candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None, cmp_type: str, return_all: bool, batch_size: int,
        *, worst: bool,
    ) -> list[Any]:
        if cmp_type not in CMP_TYPES:
            raise ValueError(f"unknown pairrm_cmp_type {cmp_type!r}; use one of {CMP_TYPES}")
        if all(len(c) == 1 for c in candidates) and len(inputs) == len(candidates):
            return [list(c) for c in candidates] if return_all else [c[0] for c in candidates]
        _check_rectangular(inputs, candidates)
        if cmp_type == "full" or not isinstance(self._loaded(), PairRM):
            ranks = self.rank(inputs, candidates, instructions, batch_size=batch_size)
        elif cmp_type == "max_wins":
            ranks = self._max_wins_ranks(inputs, candidates, instructions, batch_size)
        else:
            return _pick(candidates, self._bubble_order(inputs, candidates, instructions,
                                                        _check_batch_size(batch_size), worst),
                         return_all)
        order = np.argsort(-ranks if worst else ranks, axis=1, kind="stable")
        return _pick(candidates, order, return_all)
    def _bubble_order(
        self, inputs: Sequence[str], candidates: Sequence[Sequence[str]],
        instructions: Sequence[str] | None, batch_size: int, worst: bool,
    ) -> np.ndarray:
        """[N, n] index rows: selected candidate then losers, one permutation per batch."""
        sources = _sources(inputs, instructions)
        orders = [
            bubble_select(
                self._pairrm(), sources[s : s + batch_size], candidates[s : s + batch_size],
                worst=worst, max_batch_pairs=batch_size,
            ).order
            for s in range(0, len(sources), batch_size)
        ]
        return np.concatenate(orders, axis=0)

    # ------------------------------------------------------------------------- generation

    def n_generate(
        self,
        model: Any,
        model_tokenizer: Any,
        inputs: Sequence[str],
        instructions: Sequence[str] | None = None,
        n: int = 5,
        sampling_mode: str | None = "top_p_sampling",
        batch_size: int = 4,
        **generate_kwargs: Any,
    ) -> list[list[str]]:
        """n sampled completions per input from a transformers ``model`` (list[list[str]]).

        Prompt = instruction + "\\n" + input when instructions are given (unlike the ranker's
        no-separator source). "top_p_sampling": top_p 1.0, temperature 0.7 unless given;
        "top_k_sampling": top_k 50, temperature 0.7; None: ``generate_kwargs`` only. Without
        ``max_new_tokens``, ``max_length`` defaults to the tokenizer's ``model_max_length``.
        vLLM engines are not supported here (the original accepted ``vllm.LLM``).
        """
        if type(model).__module__.split(".")[0] == "vllm":
            raise TypeError("n_generate() supports transformers models only, not vLLM engines")
        kwargs = _generation_kwargs(model_tokenizer, n, sampling_mode, generate_kwargs)
        if instructions is not None and len(instructions) != len(inputs):
            raise ValueError(f"got {len(instructions)} instructions for {len(inputs)} inputs")
        prompts = (list(inputs) if instructions is None
                   else [f"{i}\n{x}" for i, x in zip(instructions, inputs, strict=False)])
        batch_size = _check_batch_size(batch_size)
        samples: list[list[str]] = []
        for start in range(0, len(prompts), batch_size):
            texts = _sample_batch(model, model_tokenizer, prompts[start : start + batch_size], kwargs)
            samples += [texts[k : k + n] for k in range(0, len(texts), n)]
        return samples

    def best_of_n_generate(
        self,
        model: Any,
        model_tokenizer: Any,
        inputs: Sequence[str],
        instructions: Sequence[str] | None = None,
        n: int = 5,
        sampling_mode: str | None = "top_p_sampling",
        batch_size: int = 4,
        pairrm_cmp_type: str = "bubble",
        return_all: bool = False,
        **generate_kwargs: Any,
    ) -> list[Any]:
        """:meth:`n_generate`, then :meth:`get_best_of_n` on the ORIGINAL inputs (batch <= 32)."""
        samples = self.n_generate(model, model_tokenizer, inputs, instructions, n=n,
                                  sampling_mode=sampling_mode, batch_size=batch_size,
                                  **generate_kwargs)
        return self.get_best_of_n(inputs, samples, instructions, pairrm_cmp_type=pairrm_cmp_type,
                                  return_all=return_all, batch_size=min(batch_size, 32))


# ----------------------------------------------------------------------------- loading helpers


def _config_json(directory: Path) -> dict[str, Any]:
    for name in ("config.json", "ranker_config.json"):
        path = directory / name
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
    return {}


def _is_pairrm_dir(directory: Path) -> bool:
    """An LLM-Blender ranker config (original layout) or a PairRM-hf config."""
    config = _config_json(directory)
    return config.get("ranker_type") == "pairranker" or "source_prefix_id" in config


def _check_reward_model_dir(directory: Path, ranker_path: str) -> None:
    """Accept one-label sequence classifiers; name the original's unsupported custom RMs."""
    if ranker_path.endswith(UNSUPPORTED_RMS):
        raise ValueError(f"reward model type {ranker_path} not supported by this API")
    architectures = _config_json(directory).get("architectures") or []
    classifier = any(str(a).endswith("ForSequenceClassification") for a in architectures)
    if not (classifier or ranker_path.endswith(OPENASSISTANT_RM)):
        raise ValueError(f"reward model type {ranker_path} not supported: no PairRM config and "
                         "not a sequence-classification model")


def _pointwise(rm: RewardModel, pairs: Sequence[tuple[str, str]], batch_size: int) -> np.ndarray:
    """Reward logit per (source, candidate), float32 [P]; each distinct pair is run once."""
    unique = list(dict.fromkeys(pairs))
    inputs = [encode(rm, [ChatMessage("user", source)], cand) for source, cand in unique]
    scores = reward_scores(dataclasses.replace(rm, max_batch_size=batch_size), inputs)
    position = {pair: k for k, pair in enumerate(unique)}
    return scores[[position[p] for p in pairs]].astype(np.float32)


# ----------------------------------------------------------------------------- generation helpers


def _generation_kwargs(
    tokenizer: Any, n: int, sampling_mode: str | None, generate_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """``model.generate`` keyword arguments for ``n_generate`` (spec 3.7)."""
    kwargs = dict(generate_kwargs)
    if sampling_mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling_mode {sampling_mode!r}; use one of {SAMPLING_MODES}")
    if sampling_mode == "top_k_sampling":
        kwargs.update(do_sample=True, top_k=kwargs.get("top_k", 50))
    elif sampling_mode == "top_p_sampling":
        kwargs.update(do_sample=True, top_p=kwargs.get("top_p", 1.0))
    if sampling_mode is not None:
        kwargs["temperature"] = kwargs.get("temperature", 0.7)
    if "max_new_tokens" not in kwargs:
        kwargs["max_length"] = kwargs.get("max_length", tokenizer.model_max_length)
    kwargs.update(num_return_sequences=n, output_scores=True, return_dict_in_generate=True)
    return kwargs


def _sample_batch(model: Any, tokenizer: Any, prompts: list[str], kwargs: dict[str, Any]) -> list[str]:
    """Decoded samples of one batch, n per prompt in order; the prompt part cut off."""
    encodings = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True)
    encodings = {k: v.to(model.device) for k, v in encodings.items()}
    outputs = model.generate(**encodings, **kwargs)
    sequences = outputs.sequences  # [B * n, L]
    prompt_length = encodings["input_ids"].shape[1]
    if sequences.shape[1] == prompt_length + len(outputs.scores):  # decoder-only: drop the prompt
        sequences = sequences[:, prompt_length:]
    return list(tokenizer.batch_decode(sequences, skip_special_tokens=True))
