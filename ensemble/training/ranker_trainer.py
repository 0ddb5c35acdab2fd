"""``blendgate train-ranker``: PairRM training on transformers' ``Trainer``.

The original's objective and sampling (spec 1.5): per example, ``min(num_pos, num_neg)``
candidate pairs (``all_pair`` or ``top_bottom``), each pair's order flipped with probability
0.5, loss ``-log sigmoid(sign(score_l - score_r) * logit)``. Held-out rows are every ordered pair
of the held-out examples (both orders, no sampling), evaluated at the end of each epoch (and
when the CPU budget stops the run): ``eval_loss`` and ``eval_pair_accuracy``.

Files under ``out``: the trained ranker in PairRM-hf's layout (``ranker_backbone``),
``metrics.jsonl`` (every log record), and ``trainer/checkpoint-N`` (weights, optimizer,
scheduler, RNG and callback state) from which ``--resume`` continues. fp32 on CPU, bf16
autocast on CUDA; ``threads`` torch threads (default 1).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from transformers import EvalPrediction, Trainer
from transformers.trainer_utils import get_last_checkpoint

from ensemble.experiments.evaluation.datasets import data_dir
from ensemble.rankers.pairrm.model import PairRMModel
from ensemble.training.arguments import CommonTrainingOptions, training_arguments
from ensemble.training.callbacks import common_callbacks
from ensemble.training.examples import RankingExample, split_held_out
from ensemble.training.objective import instructgpt_loss, pair_accuracy
from ensemble.training.preference_sets import DEFAULT_METRICS, load_examples
from ensemble.training.ranker_backbone import prepare_ranker, save_ranker
from ensemble.training.ranker_data import EpochClock, PairCollator, RankingDataset
from ensemble.training.sampling import SamplingMode

logger = logging.getLogger(__name__)


class TrainRankerOptions(CommonTrainingOptions):
    """Everything ``train-ranker`` takes (the CLI flags, one to one)."""

    start: str  # --from: a PairRM checkpoint or an encoder (hub id or directory)
    data: str  # comma-separated set names / JSONL files (preference_sets)
    eval_data: str | None = None  # default: eval_fraction of ``data``, held out
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    metrics: tuple[str, ...] = DEFAULT_METRICS  # MixInstruct score metrics
    sampling: SamplingMode = "all_pair"
    num_pos: int = Field(5, ge=1)
    num_neg: int = Field(5, ge=1)
    source_max_length: int | None = Field(None, ge=8)
    candidate_max_length: int | None = Field(None, ge=8)
    drop_out: float = Field(0.05, ge=0, lt=1)  # a new head's dropout (checkpoints keep theirs)


class PairwiseObjective(nn.Module):
    """What ``Trainer`` trains: the PairRM network with the instructgpt loss attached."""

    def __init__(self, ranker: PairRMModel) -> None:
        super().__init__()
        self.ranker = ranker

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.ranker(input_ids, attention_mask)  # [B] float32
        if labels is None:
            return {"logits": logits}
        return {"loss": instructgpt_loss(logits, labels), "logits": logits}


def load_splits(options: TrainRankerOptions) -> tuple[list[RankingExample], list[RankingExample]]:
    directory = data_dir(options.data_dir)
    examples = load_examples(options.data, directory, metrics=options.metrics)
    if options.eval_data:
        train = examples
        held = load_examples(options.eval_data, directory, metrics=options.metrics)
    else:
        train, held = split_held_out(examples, options.eval_fraction, options.seed)
    if options.limit is not None and options.limit < len(train):
        rng = random.Random(options.seed + 1)
        train = [train[i] for i in sorted(rng.sample(range(len(train)), options.limit))]
    return train, held


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    logits = np.asarray(prediction.predictions, dtype=np.float64).reshape(-1)
    labels = np.asarray(prediction.label_ids, dtype=np.float64).reshape(-1)
    return {"pair_accuracy": pair_accuracy(logits, labels)}


def build_trainer(options: TrainRankerOptions) -> tuple[Trainer, Any]:
    """The ``Trainer`` and the :class:`PairRM` it trains (shared weights)."""
    torch.set_num_threads(options.threads)
    pairrm = prepare_ranker(options.start, source_max_length=options.source_max_length,
                            candidate_max_length=options.candidate_max_length,
                            drop_out=options.drop_out, seed=options.seed,
                            cache_dir=options.cache_dir)
    train_examples, held_examples = load_splits(options)
    train_set = RankingDataset(pairrm, train_examples)
    held_set = RankingDataset(pairrm, held_examples, held_out=True) if held_examples else None
    logger.info("train-ranker: %d training examples (%d indistinguishable at the row limits, "
                "dropped), %d held out", len(train_set), train_set.dropped,
                len(held_set) if held_set else 0)
    if len(train_set) == 0:
        raise ValueError("no training example has two candidates that differ in score")
    options.out.mkdir(parents=True, exist_ok=True)
    collate = PairCollator(pairrm, mode=options.sampling, num_pos=options.num_pos,
                           num_neg=options.num_neg, seed=options.seed)
    trainer = Trainer(
        model=PairwiseObjective(pairrm.model),
        args=training_arguments(options, options.out / "trainer", held_set is not None),
        train_dataset=train_set, eval_dataset=held_set, data_collator=collate,
        compute_metrics=compute_metrics,
        callbacks=[EpochClock(collate.clock), *common_callbacks(options)],
    )
    return trainer, pairrm


def train_ranker(options: TrainRankerOptions) -> dict[str, Any]:
    """Train (or resume), save the ranker under ``options.out``, return the last metrics.

    ``max_steps=0`` trains nothing: the starting ranker (an encoder's new head as initialised)
    is evaluated and saved, the baseline a training run is measured against."""
    trainer, pairrm = build_trainer(options)
    if options.max_steps == 0:
        metrics = trainer.evaluate() if trainer.eval_dataset is not None else None
        pairrm.model.eval()
        save_ranker(pairrm, options.out)
        return {"train_loss": None, "steps": 0, "eval": metrics, "out": str(options.out)}
    work_dir = options.out / "trainer"
    checkpoint = get_last_checkpoint(str(work_dir)) if options.resume and work_dir.is_dir() else None
    if options.resume and checkpoint is None:
        logger.warning("train-ranker --resume: no checkpoint under %s; starting afresh", work_dir)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_state()
    pairrm.model.eval()
    save_ranker(pairrm, options.out)
    evaluated = [r for r in trainer.state.log_history if "eval_loss" in r]
    return {"train_loss": result.training_loss, "steps": trainer.state.global_step,
            "eval": evaluated[-1] if evaluated else None, "out": str(options.out)}
