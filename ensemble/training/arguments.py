"""Options both trainers take, and the ``TrainingArguments`` built from them."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import Seq2SeqTrainingArguments


class CommonTrainingOptions(BaseModel):
    """The run's schedule, checkpoints and budget (CLI flags one to one)."""

    model_config = ConfigDict(extra="forbid")

    out: Path
    data_dir: str | None = None
    limit: int | None = Field(None, ge=1)  # a seeded sample of N training examples
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1)  # -1: the epochs decide; 0: save the start untrained
    batch_size: int = Field(4, ge=1)
    eval_batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    warmup: float = Field(0.05, ge=0, lt=1)  # share of the steps
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 42
    threads: int = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1)
    resume: bool = False
    cpu_budget_min: float | None = Field(None, gt=0)
    stop_at_step: int | None = Field(None, ge=1)  # stop there, schedule still the epochs
    progress: bool = True
    cache_dir: str | None = None


def training_arguments(options: CommonTrainingOptions, work_dir: Path,
                       has_eval: bool) -> Seq2SeqTrainingArguments:
    """fp32 on CPU, bf16 autocast on CUDA; held-out evaluation at each epoch's end;
    checkpoints every ``save_steps`` (the last two kept) for ``--resume``. The seq2seq
    variant is a superset, so the ranker uses it too."""
    cuda = torch.cuda.is_available()
    return Seq2SeqTrainingArguments(
        output_dir=str(work_dir), num_train_epochs=options.epochs, max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.eval_batch_size,
        gradient_accumulation_steps=options.grad_accum, learning_rate=options.learning_rate,
        warmup_steps=options.warmup, weight_decay=options.weight_decay,
        lr_scheduler_type="linear", logging_steps=options.logging_steps,
        eval_strategy="epoch" if has_eval else "no", save_strategy="steps",
        save_steps=options.save_steps, save_total_limit=2, seed=options.seed,
        bf16=cuda, use_cpu=not cuda, dataloader_num_workers=0,
        remove_unused_columns=False, label_names=["labels"], report_to=[],
        disable_tqdm=not options.progress,
    )
