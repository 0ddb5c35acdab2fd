"""``RewardModelRanker`` on tiny random reward models (text-pair DeBERTa and chat-template Qwen2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ensemble.config import RewardModelRankerConfig
from ensemble.rankers.base import Ranker
from ensemble.rankers.reward_model import RewardModelRanker
from ensemble.types import ChatMessage

MESSAGES = [ChatMessage("system", "Answer briefly."), ChatMessage("user", "What does a tokenizer do?")]
CANDS = ["It splits text into tokens.", "Nothing.", "It maps text to ids and back, piece by piece."]


def _one_at_a_time(directory: Path, texts: list[dict]) -> list[float]:
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    with torch.inference_mode():
        return [float(model(**{k: torch.tensor([v]) for k, v in tokenizer(**t).items()
                               if k in ("input_ids", "attention_mask")}).logits[0, 0]) for t in texts]


async def _rank(directory: Path, messages, candidates):
    ranker = await RewardModelRanker.load(RewardModelRankerConfig(
        checkpoint=str(directory), device="cpu", batch_wait_ms=30, max_batch_size=16))
    try:
        assert isinstance(ranker, Ranker)
        return ranker, await ranker.rank(messages, candidates)
    finally:
        await ranker.aclose()


async def test_text_pair_format_without_chat_template(tiny_deberta_rm_dir: Path):
    _, ranking = await _rank(tiny_deberta_rm_dir, MESSAGES, CANDS)
    source = "Answer briefly.What does a tokenizer do?"  # system as instruction prefix
    expected = _one_at_a_time(tiny_deberta_rm_dir, [{"text": source, "text_pair": c} for c in CANDS])
    np.testing.assert_allclose(ranking.scores, expected, atol=1e-5)
    order = np.argsort(-np.array(expected))
    assert ranking.ranks[int(order[0])] == 1 and ranking.ranks[int(order[-1])] == 3


async def test_chat_template_format(tiny_qwen_rm_dir: Path):
    ranker, ranking = await _rank(tiny_qwen_rm_dir, MESSAGES, CANDS)
    assert ranker.rm.chat
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qwen_rm_dir))
    texts = []
    for c in CANDS:
        conv = [{"role": m.role, "content": m.content} for m in MESSAGES]
        conv.append({"role": "assistant", "content": c})
        texts.append({"text": tokenizer.apply_chat_template(conv, tokenize=False),
                      "add_special_tokens": False})
    expected = _one_at_a_time(tiny_qwen_rm_dir, texts)
    # batched with right padding reads the same last real token as one at a time
    np.testing.assert_allclose(ranking.scores, expected, atol=1e-5)
    assert len(set(expected)) == 3


async def test_concurrent_requests_batch_together(tiny_deberta_rm_dir: Path):
    ranker = await RewardModelRanker.load(RewardModelRankerConfig(
        checkpoint=str(tiny_deberta_rm_dir), device="cpu", batch_wait_ms=50, max_batch_size=16))
    calls: list[int] = []
    process = ranker._worker._process

    def counting(jobs):
        calls.append(sum(len(c) for _, c in jobs))
        return list(process(jobs))

    ranker._worker._process = counting
    try:
        prompts = [[ChatMessage("user", f"question {i}")] for i in range(3)]
        together = await asyncio.gather(*(ranker.rank(p, CANDS) for p in prompts))
        alone = [await ranker.rank(p, CANDS) for p in prompts]
    finally:
        await ranker.aclose()
    assert calls[0] == 9
    for a, b in zip(together, alone, strict=False):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


async def test_truncation_to_max_length(tiny_deberta_rm_dir: Path):
    ranker = await RewardModelRanker.load(RewardModelRankerConfig(
        checkpoint=str(tiny_deberta_rm_dir), device="cpu", max_length=16))
    try:
        from ensemble.rankers.reward_model import encode

        ids = encode(ranker.rm, [ChatMessage("user", "word " * 50)], "answer " * 50)
        assert len(ids) == 16
        ranking = await ranker.rank([ChatMessage("user", "word " * 50)], ["answer " * 50, "x"])
        assert len(ranking.scores) == 2
    finally:
        await ranker.aclose()
