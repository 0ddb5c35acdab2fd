"""The TRL ``PairRMJudge`` pattern (trl_style_judge.py) unmodified against the drop-in, on the
tiny PairRM cached as ``llm-blender/PairRM`` with ``HF_HUB_OFFLINE=1`` (conftest.py).

Its ``rank`` calls must return what ``ensemble.compat.Blender.rank`` returns on the same
weights (numpy int32 ranks / float32 scores, [N, 2]); the judge's answers then follow. The
expected values come from blendgate's Blender on the same weights loaded from their source
directory, in this process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ensemble.compat.blender import Blender
from tests.dropin.cached_checkpoints import PAIRRM_HF
from tests.dropin.conftest import RunBlocks

pytestmark = pytest.mark.timeout(600)

PROMPTS = ["Translate 'hello' to French", "What's the capital of Japan?", "hello, how are you!"]
COMPLETIONS = [["Bonjour", "Salut"], ["Kyoto", "Tokyo"], ["get out!", "hi! I am fine, thanks!"]]
SCRIPT = f"""
import numpy as np
from tests.dropin.trl_style_judge import PairRMJudge

prompts, completions = {PROMPTS!r}, {COMPLETIONS!r}
judge = PairRMJudge()
device = judge.blender.device
raw_ranks = judge.blender.rank(prompts, completions, return_scores=False, disable_tqdm=True)
raw_scores = judge.blender.rank(prompts, completions, return_scores=True, disable_tqdm=True)
hard = judge.judge(prompts, completions, shuffle_order=False)
soft = judge.judge(prompts, completions, shuffle_order=False, return_scores=True, temperature=0.5)
np.random.seed(0)
shuffled_hard = judge.judge(prompts, completions)
np.random.seed(0)
flips = np.random.choice([True, False], size=len(prompts))
np.random.seed(0)
shuffled_soft = judge.judge(prompts, completions, return_scores=True)
"""
NAMES = ["device", "raw_ranks", "raw_scores", "hard", "soft", "shuffled_hard", "flips",
         "shuffled_soft"]


def test_the_judge_runs_unmodified_and_rank_returns_blenders_arrays(
    run_blocks: RunBlocks, hf_home: dict[str, Path]
) -> None:
    torch.set_num_threads(1)
    reference = Blender()
    reference.loadranker(str(hf_home[PAIRRM_HF]), device="cpu")
    scores = reference.rank(PROMPTS, COMPLETIONS, return_scores=True)
    assert np.abs(scores[:, 0] - scores[:, 1]).min() > 1e-3  # a real preference each time
    ranks = reference.rank(PROMPTS, COMPLETIONS)

    report = run_blocks([SCRIPT], [NAMES])["blocks"][0]
    assert report["device"]["value"] == "cpu"  # Accelerator().device, CUDA hidden (conftest.py)
    assert report["raw_ranks"] == {"type": "ndarray", "dtype": "int32", "shape": [3, 2],
                                   "value": ranks.tolist()}
    raw_scores = report["raw_scores"]
    assert (raw_scores["dtype"], raw_scores["shape"]) == ("float32", [3, 2])
    np.testing.assert_allclose(raw_scores["value"], scores, atol=1e-5)

    hard = [r["value"] for r in report["hard"]["value"]]
    assert hard == (ranks[:, 0] - 1).tolist()
    halved = scores / 0.5
    probs = np.exp(halved[:, 0]) / np.exp(halved).sum(axis=1)
    np.testing.assert_allclose([p["value"] for p in report["soft"]["value"]], probs, atol=1e-5)
    # Shuffled pairs are ranked in the other order and flipped back: the same answers.
    assert any(report["flips"]["value"]) and not all(report["flips"]["value"])
    assert [r["value"] for r in report["shuffled_hard"]["value"]] == hard
    unhalved = np.exp(scores[:, 0]) / np.exp(scores).sum(axis=1)
    np.testing.assert_allclose([p["value"] for p in report["shuffled_soft"]["value"]],
                               unhalved, atol=1e-4)
