"""``blendgate train-fuser`` on a tiny T5 in gen_fuser_3b's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ensemble.fusers.genfuser.model import load_fuser
from ensemble.fusers.genfuser.prompt import format_input
from ensemble.training.fuser_data import FuserDataset, fuser_examples
from ensemble.training.fuser_trainer import TrainFuserOptions, build_fuser_trainer, train_fuser
from tests.genfuser.tiny_t5 import build_tiny_checkpoint

ANSWERS = ["hello world, how are you today?", "The quick brown fox jumps over the lazy dog.",
           "I am fine, thanks!"]


@pytest.fixture(scope="module")
def tiny_fuser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("fuser") / "t5")


@pytest.fixture(scope="module")
def mixinstruct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 records whose target is the best candidate (bartscore), listed in varying places."""
    path = tmp_path_factory.mktemp("mix") / "mix.jsonl"
    lines = []
    for i in range(20):
        best = ANSWERS[i % 3]
        others = [a for a in ANSWERS if a != best]
        candidates = [{"model": "m1", "text": others[0], "scores": {"bartscore": -3.0}},
                      {"model": "m2", "text": best, "scores": {"bartscore": -1.0}},
                      {"model": "m3", "text": others[1], "scores": {"bartscore": -2.0}},
                      {"model": "m4", "text": "numbers 0 1 2", "scores": {"bartscore": -4.0}}]
        lines.append(json.dumps({"id": f"t/{i}", "instruction": "Summarize candidates",
                                 "input": f"hello {i}", "output": best,
                                 "candidates": candidates[i % 2:] + candidates[: i % 2]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_inputs_are_the_serving_prompt_over_the_top_three(tiny_fuser: Path,
                                                          mixinstruct: Path) -> None:
    examples = fuser_examples(mixinstruct)
    assert examples[0].candidates == (ANSWERS[0], ANSWERS[2], ANSWERS[1])  # by bartscore
    tokenizer = load_fuser(str(tiny_fuser), device="cpu").tokenizer
    item = FuserDataset(tokenizer, examples[:1])[0]
    expected = format_input("Summarize candidates", "hello 0", examples[0].candidates)
    assert item["input_ids"] == [*tokenizer(expected, add_special_tokens=False)["input_ids"],
                                 tokenizer.eos_token_id]
    assert item["labels"][-1] == tokenizer.eos_token_id


def test_training_lowers_held_out_loss_and_the_output_loads(tiny_fuser: Path,
                                                            mixinstruct: Path,
                                                            tmp_path: Path) -> None:
    options = TrainFuserOptions(start=str(tiny_fuser), data=mixinstruct, out=tmp_path / "f",
                                eval_fraction=0.2, epochs=4, learning_rate=3e-3, batch_size=4,
                                save_steps=8, progress=False)
    trainer, _ = build_fuser_trainer(options)
    before = trainer.evaluate()["eval_loss"]
    result = train_fuser(options.model_copy(update={"resume": True}))  # no checkpoint yet
    assert result["steps"] == 16
    assert result["eval"]["eval_loss"] < before - 0.5
    loaded = load_fuser(str(tmp_path / "f"), device="cpu")
    assert loaded.tokenizer.eos_token_id == 1
    records = (tmp_path / "f" / "metrics.jsonl").read_text().splitlines()
    assert sum("eval_loss" in json.loads(r) for r in records) >= 4
