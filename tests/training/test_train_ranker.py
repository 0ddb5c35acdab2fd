"""``blendgate train-ranker`` on tiny checkpoints: it learns, it resumes, and what it writes
loads in the gateway's ``pairrm`` ranker, in ``Blender.loadranker`` and in
``DebertaV2PairRM.from_pretrained``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble.config import PairRMRankerConfig
from ensemble.errors import ConfigError
from ensemble.rankers.pairrm import PairRMRanker, load_pairrm, pair_logits
from ensemble.rankers.pairrm.hf_model import DebertaV2PairRM
from ensemble.training.ranker_trainer import TrainRankerOptions, build_trainer, train_ranker
from ensemble.types import ChatMessage
from gateway.cli import main
from tests.pairrm.test_model_card_parity import ModelCardReference
from tests.training.conftest import BAD, GOOD

LIMITS = {"source_max_length": 48, "candidate_max_length": 48}
PROMPT = "question 99 about the model"


def options(start: Path, data: Path, out: Path, **extra: object) -> TrainRankerOptions:
    base: dict[str, object] = {"start": str(start), "data": str(data), "out": out,
                               "eval_fraction": 0.2, "learning_rate": 1e-3, "batch_size": 4,
                               "save_steps": 10, "progress": False, **LIMITS}
    return TrainRankerOptions(**{**base, **extra})


def test_training_lowers_held_out_loss(tiny_pairrm_dir: Path, preference_file: Path,
                                       tmp_path: Path) -> None:
    trainer, _ = build_trainer(options(tiny_pairrm_dir, preference_file, tmp_path, epochs=5))
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    print(before, after)
    assert after["eval_loss"] < before["eval_loss"] - 0.1
    # both orders of 12 held-out pairs
    assert after["eval_pair_accuracy"] > before["eval_pair_accuracy"] + 0.2


def test_written_ranker_loads_in_gateway_and_blender(tiny_pairrm_dir: Path,
                                                     preference_file: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "ranker"
    result = train_ranker(options(tiny_pairrm_dir, preference_file, out, epochs=3))
    assert result["steps"] == 36 and result["eval"]["eval_loss"] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "eval_loss" in r] == [1.0, 2.0, 3.0]
    assert json.loads((out / "config.json").read_text())["architectures"] == ["DebertaV2PairRM"]

    triples = [(PROMPT, GOOD, BAD), (PROMPT, BAD, GOOD)]
    loaded = load_pairrm(str(out), device="cpu")
    assert (loaded.source_max_length, loaded.candidate_max_length) == (48, 48)
    logits = pair_logits(loaded, triples)
    assert logits[0] > logits[1]  # the trained preference, from the files

    # the transformers model of the drop-in, on the model card's rows: the same logits
    hf = DebertaV2PairRM.from_pretrained(str(out), device_map="cpu").eval()
    ids = ModelCardReference(out).tokenize_pair([PROMPT, PROMPT], [GOOD, BAD], [BAD, GOOD])
    with torch.no_grad():
        hf_logits = hf(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert hf_logits.tolist() == pytest.approx(logits.tolist(), abs=1e-4)

    from ensemble.compat.blender import Blender

    blender = Blender()
    blender.loadranker(str(out), device="cpu")
    ranks = blender.rank([PROMPT], [[BAD, GOOD]])
    assert np.asarray(ranks).tolist() == [[2, 1]]

    ranker = await_ranker(PairRMRankerConfig(checkpoint=str(out), device="cpu", **LIMITS))
    ranking = ranker_rank(ranker, [BAD, GOOD])
    assert ranking.ranks == (2, 1)


def await_ranker(cfg: PairRMRankerConfig) -> PairRMRanker:
    import asyncio

    return asyncio.run(PairRMRanker.load(cfg))


def ranker_rank(ranker: PairRMRanker, candidates: list[str]):  # -> Ranking
    import asyncio

    async def rank():  # the worker's loop must be the one that awaits it
        return await ranker.rank([ChatMessage("user", PROMPT)], candidates)

    return asyncio.run(rank())


def test_resume_continues_to_the_same_weights(tiny_pairrm_dir: Path, preference_file: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_ranker(options(tiny_pairrm_dir, preference_file, out, max_steps=8, save_steps=4,
                         eval_fraction=0.0))
    uninterrupted = load_file(str(out / "model.safetensors"))
    # As if killed after step 4: only checkpoint-4 is left.
    shutil.rmtree(out / "trainer" / "checkpoint-8")
    (out / "model.safetensors").unlink()
    result = train_ranker(options(tiny_pairrm_dir, preference_file, out, max_steps=8,
                                  save_steps=4, eval_fraction=0.0, resume=True))
    assert result["steps"] == 8
    resumed = load_file(str(out / "model.safetensors"))
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-4, atol=1e-5)


def test_bert_backbone_trains_and_loads(tiny_bert_dir: Path, preference_file: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "bert-ranker"
    train_ranker(options(tiny_bert_dir, preference_file, out, epochs=3))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertPairRM"]
    loaded = load_pairrm(str(out), device="cpu")
    assert type(loaded.model.pretrained_model).__name__ == "BertModel"
    logits = pair_logits(loaded, [(PROMPT, GOOD, BAD), (PROMPT, BAD, GOOD)])
    assert logits[0] > logits[1]
    ranker = await_ranker(PairRMRankerConfig(checkpoint=str(out), device="cpu", **LIMITS))
    assert ranker_rank(ranker, [BAD, GOOD]).ranks == (2, 1)


def test_bert_rows_must_fit_its_positions(tiny_bert_dir: Path, preference_file: Path,
                                          tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="256 positions"):
        build_trainer(options(tiny_bert_dir, preference_file, tmp_path,
                              source_max_length=128, candidate_max_length=128))


def test_cli_reports_bad_options(tiny_pairrm_dir: Path, preference_file: Path,
                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train-ranker", "--from", str(tiny_pairrm_dir), "--data", str(preference_file),
            "--out", str(tmp_path)]
    assert main([*argv, "--eval-fraction", "2"]) == 2
    assert "--eval-fraction" in capsys.readouterr().err
    assert main([*argv[:4], "no-such-set", *argv[5:]]) == 2
    assert "no preference set 'no-such-set'" in capsys.readouterr().err


def test_stop_at_step_keeps_the_epoch_schedule(tiny_pairrm_dir: Path, preference_file: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    result = train_ranker(options(tiny_pairrm_dir, preference_file, out, epochs=3,
                                  stop_at_step=5, logging_steps=5))
    assert result["steps"] == 5 and result["eval"]["step"] == 5  # evaluated where it stopped
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    [logged] = [r for r in records if "learning_rate" in r]
    # 36 steps planned (3 epochs of 12), 2 of warm-up: the rate at step 5 is still high.
    assert logged["step"] == 5 and logged["learning_rate"] > 8e-4
    assert (out / "model.safetensors").is_file()


def test_gateway_refuses_rows_longer_than_a_bert_ranker_takes(tiny_bert_dir: Path,
                                                              preference_file: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "bert-ranker"
    train_ranker(options(tiny_bert_dir, preference_file, out, max_steps=0))
    # The config defaults (1224 + 2 x 412) would fail every long request at run time.
    with pytest.raises(ConfigError, match="exceed the encoder's 256 positions; it was trained "
                                          "with source_max_length 48"):
        await_ranker(PairRMRankerConfig(checkpoint=str(out), device="cpu"))
