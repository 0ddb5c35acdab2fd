"""``RewardModelRanker``: pointwise reward models (``AutoModelForSequenceClassification``).

One forward pass per candidate (n instead of PairRM's n(n-1)); score = the single logit,
ranks = competition ranks of the scores (1 = best). Candidates of concurrent requests are
gathered by a :class:`~ensemble.compute.BatchWorker` (weight = number of candidates) and run in
length-sorted batches of at most ``max_batch_size``.

Input format, chosen by the tokenizer:

- with a chat template (e.g. Skywork-Reward-V2-Qwen3-0.6B): the whole conversation (system,
  user and assistant turns as given) plus ``{"role": "assistant", "content": candidate}``,
  rendered by the template and tokenized without extra special tokens (the template carries
  them), right-truncated to ``max_length``;
- without one (e.g. OpenAssistant/reward-model-deberta-v3-large-v2): the text pair
  ``[CLS] source [SEP] candidate [SEP]`` with ``longest_first`` truncation to ``max_length``;
  the source is built like PairRM's (``inputs.chat_prompt``: system + user text, or the
  conversation template for multi-turn). LLM-Blender instead pre-cut each text by an
  encode/decode round trip; the two agree whenever nothing is truncated.

Decoder reward models read the logit at the last non-pad token, so the model config needs a
pad id; when the tokenizer has no pad token its EOS is used (and set on the model config).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ensemble.checkpoints import public_name, resolve_dir
from ensemble.compute import BatchWorker, request_torch_threads
from ensemble.config import RewardModelRankerConfig
from ensemble.errors import ConfigError, RankerError
from ensemble.placement import resolve_device, resolve_dtype
from ensemble.rankers.pairrm.inputs import chat_prompt, distinct_rows, length_sorted_batches
from ensemble.rankers.ranks import ranks_from_scores
from ensemble.types import ChatMessage, Ranking

logger = logging.getLogger(__name__)

Job = tuple[tuple[ChatMessage, ...], tuple[str, ...]]  # (messages, candidates)


@dataclass
class RewardModel:
    """A loaded sequence-classification reward model and its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    max_length: int
    max_batch_size: int

    @property
    def chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def load_reward_model(cfg: RewardModelRankerConfig) -> RewardModel:
    directory = resolve_dir(cfg.checkpoint, cfg.cache_dir)
    device = resolve_device(cfg.device)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(directory), dtype=resolve_dtype(cfg.dtype, device))
    if model.config.num_labels != 1:
        raise ConfigError(f"{cfg.checkpoint}: a reward model has one label, this one has "
                          f"{model.config.num_labels}", key="checkpoint")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return RewardModel(model.to(device).eval(), tokenizer, cfg.max_length, cfg.max_batch_size)


def encode(rm: RewardModel, messages: Sequence[ChatMessage], candidate: str) -> list[int]:
    """Token ids of one (conversation, candidate) input, truncated to ``max_length``."""
    tok = rm.tokenizer
    if rm.chat:
        conversation = [{"role": m.role, "content": m.content} for m in messages
                        if m.role in ("system", "user", "assistant")]
        conversation.append({"role": "assistant", "content": candidate})
        text = tok.apply_chat_template(conversation, tokenize=False)
        ids = tok(text, add_special_tokens=False, truncation=True, max_length=rm.max_length)
    else:
        prompt = chat_prompt(messages)
        ids = tok(prompt.source, prompt.candidate(candidate), truncation="longest_first",
                  max_length=rm.max_length)
    return list(ids["input_ids"])


def reward_scores(rm: RewardModel, inputs: Sequence[list[int]]) -> np.ndarray:
    """The reward logit per input, float32 [N], in length-sorted batches.

    Identical inputs run once (:func:`distinct_rows`), so duplicate candidates tie exactly.
    """
    rows, index = distinct_rows(inputs)
    out = np.zeros((len(rows),), dtype=np.float32)
    device = next(rm.model.parameters()).device
    with torch.inference_mode():
        for chunk in length_sorted_batches([len(x) for x in rows], rm.max_batch_size):
            batch = rm.tokenizer.pad({"input_ids": [list(rows[i]) for i in chunk]},
                                     padding=True, return_tensors="pt")
            logits = rm.model(input_ids=batch["input_ids"].to(device),
                              attention_mask=batch["attention_mask"].to(device)).logits  # [b, 1]
            out[chunk] = logits[:, 0].float().cpu().numpy()
    return out[index]


class RewardModelRanker:
    """Pointwise reward model behind the ``Ranker`` protocol."""

    order_invariant = True

    def __init__(self, cfg: RewardModelRankerConfig, rm: RewardModel,
                 worker: BatchWorker[Job, np.ndarray]) -> None:
        self.name = f"reward_model:{public_name(cfg.checkpoint)}"
        self.rm = rm
        self._worker = worker

    @classmethod
    async def load(cls, cfg: RewardModelRankerConfig) -> RewardModelRanker:
        holder: list[RewardModel] = []

        def process(jobs: Sequence[Job]) -> list[np.ndarray]:
            return _run_jobs(holder[0], jobs)

        worker: BatchWorker[Job, np.ndarray] = BatchWorker(
            process, name="reward-model", max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.batch_wait_ms, weight=lambda job: len(job[1]),
        )

        def build() -> RewardModel:
            request_torch_threads(cfg.threads, "reward_model ranker")
            rm = load_reward_model(cfg)
            reward_scores(rm, [encode(rm, [ChatMessage("user", "warm-up")], "ok")])
            return rm

        holder.append(await worker.load(build))
        return cls(cfg, holder[0], worker)

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        if not candidates:
            return Ranking(scores=(), ranks=())
        scores = await self._worker.submit((tuple(messages), tuple(candidates)))
        return Ranking(scores=tuple(float(s) for s in scores),
                       ranks=tuple(int(r) for r in ranks_from_scores(scores)))

    async def aclose(self) -> None:
        await self._worker.aclose()


def _run_jobs(rm: RewardModel, jobs: Sequence[Job]) -> list[np.ndarray]:
    try:
        inputs = [encode(rm, messages, c) for messages, cands in jobs for c in cands]
        flat = reward_scores(rm, inputs)
    except Exception as exc:
        logger.exception("reward model forward failed")
        raise RankerError(f"reward model failed: {type(exc).__name__}: {exc}") from exc
    out, start = [], 0
    for _, cands in jobs:
        out.append(flat[start : start + len(cands)])
        start += len(cands)
    return out
