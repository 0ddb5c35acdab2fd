"""PairRM on CUDA: fp32 equals the CPU, fp16/bf16 keep the fp32 ranks, SDPA equals eager.

Marked ``gpu``: skipped without CUDA (``BLENDGATE_GPU_TEST_DEVICE=cpu`` dry-runs them on the
CPU, which checks the tests, not the GPU). Inputs are AlpacaEval instructions with the answers
of five models, at the real truncation limits 1224/412, read from ``$BLENDGATE_EVAL_DATA`` or
``../shared/data`` (benchmarks/gpu_check.sh carries them to the GPU host).

Weights are random, so the rank test uses ``lively_pairrm_dir`` (see its docstring): a model
whose candidates differ by whole units of score. Where two fp32 scores are closer than
``margin``, low-precision rounding may legitimately swap them; those pairs are counted and
must stay a minority, and every other pair must keep its fp32 order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.bench_pairrm import load_items
from ensemble.experiments.evaluation.datasets import data_dir
from ensemble.rankers.pairrm import (
    PairRM,
    full_matrices,
    load_pairrm,
    ranks_from_scores,
    scores_from_matrix,
)

pytestmark = pytest.mark.gpu

N_CANDIDATES = 5
ITEMS = 6
# Largest |logit - fp32 logit| allowed, as a fraction of the largest |fp32 logit|, and the fp32
# score gap under which two candidates count as a near-tie. Measured on the CPU with the lively
# model: fp16 0.6 %, bf16 3.9 % (bf16 keeps 8 bits of mantissa).
TOLERANCE = {"float16": 0.02, "bfloat16": 0.10}
MARGIN = {"float16": 0.1, "bfloat16": 0.5}


@pytest.fixture(scope="module")
def alpaca_items() -> list[tuple[str, list[str]]]:
    results = data_dir() / "alpaca_eval" / "results"
    if not results.is_dir():
        pytest.skip(f"AlpacaEval outputs not found at {results} (set BLENDGATE_EVAL_DATA)")
    return load_items(results, N_CANDIDATES)[:ITEMS]


def _matrices(pairrm: PairRM, items: Sequence[tuple[str, list[str]]]) -> np.ndarray:
    return np.stack(full_matrices(pairrm, [q for q, _ in items], [a for _, a in items]))


def _logits_on(directory: Path, items: Sequence[tuple[str, list[str]]], device: str,
               dtype: str = "float32", attention: str = "sdpa") -> np.ndarray:
    pairrm = load_pairrm(str(directory), device=device, dtype=dtype, attention=attention)  # type: ignore[arg-type]
    try:
        return _matrices(pairrm, items)
    finally:
        del pairrm
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


@pytest.fixture(scope="module")
def cpu_fp32(lively_pairrm_dir: Path, alpaca_items: list[tuple[str, list[str]]]) -> np.ndarray:
    return _logits_on(lively_pairrm_dir, alpaca_items, "cpu")


@pytest.fixture(scope="module")
def device_fp32(lively_pairrm_dir: Path, alpaca_items: list[tuple[str, list[str]]],
                gpu_device: str) -> np.ndarray:
    return _logits_on(lively_pairrm_dir, alpaca_items, gpu_device)


def test_fp32_on_the_gpu_equals_the_cpu(cpu_fp32: np.ndarray, device_fp32: np.ndarray) -> None:
    assert np.abs(cpu_fp32).max() > 1.0  # a model whose logits say something
    assert np.abs(device_fp32 - cpu_fp32).max() <= 1e-4
    assert np.array_equal(_ranks(device_fp32), _ranks(cpu_fp32))


def test_sdpa_equals_eager_on_the_gpu(lively_pairrm_dir: Path, gpu_device: str,
                                      alpaca_items: list[tuple[str, list[str]]],
                                      device_fp32: np.ndarray) -> None:
    eager = _logits_on(lively_pairrm_dir, alpaca_items, gpu_device, attention="eager")
    assert np.abs(eager - device_fp32).max() <= 1e-4


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_keeps_the_fp32_ranks(
    dtype: str, lively_pairrm_dir: Path, gpu_device: str,
    alpaca_items: list[tuple[str, list[str]]], device_fp32: np.ndarray,
) -> None:
    low = _logits_on(lively_pairrm_dir, alpaca_items, gpu_device, dtype=dtype)
    scale = float(np.abs(device_fp32).max())
    assert np.abs(low - device_fp32).max() <= TOLERANCE[dtype] * scale

    reference, scores = scores_from_matrix(device_fp32), scores_from_matrix(low)
    decisive = kept = 0
    for item in range(len(alpaca_items)):
        for a, b in itertools.combinations(range(N_CANDIDATES), 2):
            gap = reference[item, a] - reference[item, b]
            if abs(gap) > MARGIN[dtype]:
                decisive += 1
                kept += int(np.sign(scores[item, a] - scores[item, b]) == np.sign(gap))
    pairs = len(alpaca_items) * N_CANDIDATES * (N_CANDIDATES - 1) // 2
    assert decisive >= pairs // 2, f"only {decisive} of {pairs} pairs are apart by {MARGIN[dtype]}"
    assert kept == decisive
    # Whole rankings: every item without a near-tie ranks exactly as in fp32.
    clear = [i for i in range(len(alpaca_items)) if _min_gap(reference[i]) > MARGIN[dtype]]
    assert np.array_equal(_ranks(low)[clear], _ranks(device_fp32)[clear])


def _ranks(matrices: np.ndarray) -> np.ndarray:
    return ranks_from_scores(scores_from_matrix(matrices))


def _min_gap(scores: np.ndarray) -> float:
    return float(np.diff(np.sort(scores)).min())
