"""``Trainer`` callbacks shared by train-ranker and train-fuser: a JSONL metrics log and a
CPU-time budget that survives a resume."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState


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


class CpuBudget(TrainerCallback, ExportableState):
    """Stops training once this run has used ``budget_s`` of process CPU time, counting the
    time of the runs it resumed (saved in the checkpoint's trainer state). The stop step is
    evaluated and saved like an epoch end."""

    def __init__(self, budget_s: float | None = None) -> None:
        self.budget_s = budget_s
        self.used_before_s = 0.0  # CPU seconds of earlier runs (restored on resume)
        self._start = time.process_time()

    def used_s(self) -> float:
        return self.used_before_s + time.process_time() - self._start

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.budget_s is not None and self.used_s() >= self.budget_s:
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True

    def state(self) -> dict[str, Any]:
        return {"args": {"budget_s": self.budget_s},
                "attributes": {"used_before_s": self.used_s()}}
