"""``Trainer`` callbacks shared by train-ranker and train-fuser: a JSONL metrics log and a
CPU-time budget that counts resumed runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ensemble.training.arguments import CommonTrainingOptions


class MetricsLog(TrainerCallback):
    """Appends every ``Trainer.log`` record (train loss, eval metrics) to a JSON-lines file.

    A resumed run appends to the same file; each line has the global step, so a reader keeps
    the last line per step and kind."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(),
                  "cpu_s": round(time.process_time(), 1), **logs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class CpuBudget(TrainerCallback):
    """Stops training once the run has used ``budget_s`` of process CPU time, counting the
    runs it resumed, or at global step ``stop_at_step``: unlike ``max_steps``, neither changes
    the learning-rate schedule, so ``stop_at_step`` replays a budget-stopped run exactly. Each
    checkpoint save records the CPU time so far in ``record``, and a resumed run starts from
    that figure; the budget itself is this run's (a resume may raise or lower it). The stop
    step is evaluated and saved like an epoch end."""

    def __init__(self, budget_s: float | None, record: Path, *, resumed: bool,
                 stop_at_step: int | None = None) -> None:
        self.budget_s = budget_s
        self.stop_at_step = stop_at_step
        self.record = record
        self.used_before_s = _read_used(record) if resumed else 0.0
        self._start = time.process_time()

    def used_s(self) -> float:
        return self.used_before_s + time.process_time() - self._start

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        spent = self.budget_s is not None and self.used_s() >= self.budget_s
        if spent or (self.stop_at_step is not None and state.global_step >= self.stop_at_step):
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"step": state.global_step,
                                           "cpu_s": round(self.used_s(), 1)}), encoding="utf-8")


def _read_used(record: Path) -> float:
    try:
        return float(json.loads(record.read_text(encoding="utf-8"))["cpu_s"])
    except (OSError, ValueError, KeyError):
        return 0.0


def common_callbacks(options: CommonTrainingOptions) -> list[TrainerCallback]:
    """The metrics log (``OUT/metrics.jsonl``) and the budget (``OUT/trainer/cpu_used.json``)."""
    budget = options.cpu_budget_min * 60 if options.cpu_budget_min else None
    return [MetricsLog(options.out / "metrics.jsonl"),
            CpuBudget(budget, options.out / "trainer" / "cpu_used.json", resumed=options.resume,
                      stop_at_step=options.stop_at_step)]
