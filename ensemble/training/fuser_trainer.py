"""``blendgate train-fuser``: GenFuser (seq2seq) fine-tuning on ``Seq2SeqTrainer``.

Data: MixInstruct-format records (``fuser_data``), the serving prompt over the top 3
candidates, target cut to 128 tokens (the original's limits: 1024 / 128 / 128). Held-out
evaluation (``eval_loss``, teacher-forced cross-entropy) at the end of each epoch, checkpoints
and ``--resume``, ``OUT/metrics.jsonl``, the CPU budget: as ``train-ranker``. ``OUT`` gets the
model and its tokenizer (``tokenizer.json`` verbatim), loadable as ``fuser: {type: genfuser,
checkpoint: OUT}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer
from transformers.trainer_utils import get_last_checkpoint

from ensemble.experiments.evaluation.datasets import choose
from ensemble.fusers.genfuser.model import load_fuser
from ensemble.training.arguments import CommonTrainingOptions, training_arguments
from ensemble.training.callbacks import common_callbacks
from ensemble.training.examples import split_held_out
from ensemble.training.fuser_data import FuserDataset, fuser_examples
from ensemble.training.preference_sets import DEFAULT_METRICS

logger = logging.getLogger(__name__)


class TrainFuserOptions(CommonTrainingOptions):
    """Everything ``train-fuser`` takes (the CLI flags, one to one)."""

    start: str = "llm-blender/gen_fuser_3b"  # --from: a seq2seq checkpoint
    data: Path  # MixInstruct JSON / JSONL
    eval_data: Path | None = None  # default: eval_fraction of ``data``, held out
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    metrics: tuple[str, ...] = DEFAULT_METRICS
    top_k: int = Field(3, ge=1)
    learning_rate: float = Field(5e-5, gt=0)  # the original's (ds_train_xl.sh)


def build_fuser_trainer(options: TrainFuserOptions) -> tuple[Seq2SeqTrainer, Any]:
    torch.set_num_threads(options.threads)
    fuser = load_fuser(options.start, cache_dir=options.cache_dir, device="cpu",
                       dtype="float32")
    examples = fuser_examples(options.data, top_k=options.top_k, metrics=options.metrics)
    if options.eval_data is not None:
        train, held = examples, fuser_examples(options.eval_data, top_k=options.top_k,
                                               metrics=options.metrics)
    else:
        train, held = split_held_out(examples, options.eval_fraction, options.seed)
    if options.limit is not None:
        train = choose(train, sample=options.limit, seed=options.seed + 1)
    if not train:
        raise ValueError(f"{options.data}: no training records")
    train_set = FuserDataset(fuser.tokenizer, train)
    held_set = FuserDataset(fuser.tokenizer, held) if held else None
    logger.info("train-fuser: %d training records, %d held out", len(train_set),
                len(held_set) if held_set else 0)
    options.out.mkdir(parents=True, exist_ok=True)
    trainer = Seq2SeqTrainer(
        model=fuser.model,
        args=training_arguments(options, options.out / "trainer", held_set is not None),
        train_dataset=train_set, eval_dataset=held_set,
        data_collator=DataCollatorForSeq2Seq(fuser.tokenizer, model=fuser.model),
        callbacks=common_callbacks(options),
    )
    return trainer, fuser


def train_fuser(options: TrainFuserOptions) -> dict[str, Any]:
    """Train (or resume), save model + tokenizer under ``options.out``, return the metrics."""
    trainer, fuser = build_fuser_trainer(options)
    steps = 0
    if options.max_steps != 0:
        work_dir = options.out / "trainer"
        checkpoint = (get_last_checkpoint(str(work_dir))
                      if options.resume and work_dir.is_dir() else None)
        trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_state()
        steps = trainer.state.global_step
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else None
    save_fuser(fuser.model, fuser.tokenizer, options.out)
    return {"steps": steps, "eval": metrics, "out": str(options.out)}


def save_fuser(model: Any, tokenizer: Any, directory: Path) -> None:
    model.eval()
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
