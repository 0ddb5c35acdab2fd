"""Consensus (minimum-Bayes-risk) ranking with all-MiniLM-L6-v2 sentence embeddings.

MBR picks the candidate with the least expected loss against the others, the others standing
in for samples of the true answer distribution. With cosine similarity as the utility, the
score of candidate i is the mean cosine similarity between its embedding and the embeddings of
every OTHER candidate; the candidate that agrees most with the rest ranks first, and an
outlier ranks last. The conversation itself is not looked at.

Imported only when a consensus ranker is configured (it pulls in torch). Embeddings are
sentence-transformers' recipe for all-MiniLM-L6-v2, written out with plain
transformers: BERT last hidden state -> mean over the non-padding tokens -> L2 norm. Every
request's texts go through one :class:`BatchWorker`, so concurrent rankings share forward
passes on one dedicated thread; identical texts are embedded once, so they get exactly equal
scores (a tie, sharing the best rank).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from ensemble.backends.model_path import package_model_dir
from ensemble.compute import BatchWorker, request_torch_threads
from ensemble.config import ConsensusRankerConfig
from ensemble.errors import ConfigError, OverloadedError, RankerError
from ensemble.placement import resolve_device
from ensemble.rankers.ranks import ranks_from_scores
from ensemble.types import ChatMessage, Ranking

_MAX_ROWS = 64  # texts per forward pass
_BATCH_WAIT_MS = 2.0
_DEFAULT_MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256-token inputs
_DIGITS = 6  # scores are rounded: float noise must not break ties between equal texts


class ConsensusRanker:
    """MBR ranker; build it with ``await ConsensusRanker.load(cfg)``."""

    name = "consensus"
    order_invariant = True  # each answer's mean similarity to the others

    def __init__(self, embedder: _Embedder, worker: BatchWorker[tuple[str, ...], tuple[float, ...]]):
        self._embedder = embedder
        self._worker = worker

    @classmethod
    async def load(cls, cfg: ConsensusRankerConfig) -> ConsensusRanker:
        """Load MiniLM on the ranker's own thread, then run one warm-up batch there."""
        embedder = _Embedder(cfg)
        worker: BatchWorker[tuple[str, ...], tuple[float, ...]] = BatchWorker(
            embedder.score_batch,
            name="consensus",
            max_batch_size=_MAX_ROWS,
            max_wait_ms=_BATCH_WAIT_MS,
            weight=len,
        )
        def build() -> None:
            embedder.load()
            embedder.embed(["warm-up"])

        await worker.load(build)
        return cls(embedder, worker)

    async def rank(self, messages: Sequence[ChatMessage], candidates: Sequence[str]) -> Ranking:
        if len(candidates) < 2:
            return Ranking(scores=(0.0,) * len(candidates), ranks=(1,) * len(candidates))
        try:
            scores = await self._worker.submit(tuple(candidates))
        except OverloadedError:
            raise
        except Exception as exc:  # any model failure is the ranker's
            raise RankerError(f"consensus ranker: {type(exc).__name__}: {exc}") from exc
        return Ranking(scores=scores, ranks=tuple(int(r) for r in ranks_from_scores(scores)))

    async def aclose(self) -> None:
        await self._worker.aclose()


class _Embedder:
    """MiniLM on one device; every method runs on the worker's thread."""

    def __init__(self, cfg: ConsensusRankerConfig) -> None:
        self._cfg = cfg
        self._model: Any = None  # transformers BertModel
        self._tokenizer: Any = None
        self._device = torch.device("cpu")
        self._max_tokens = _DEFAULT_MAX_TOKENS

    def load(self) -> None:
        request_torch_threads(self._cfg.threads, "consensus ranker")
        path = package_model_dir(self._cfg.model)
        device = resolve_device(self._cfg.device)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load embedding model {path}: {exc}",
                              key="ranker.model") from exc
        self._device = device
        st_config = Path(path) / "sentence_bert_config.json"
        if st_config.is_file():
            declared = json.loads(st_config.read_text()).get("max_seq_length")
            self._max_tokens = int(declared or _DEFAULT_MAX_TOKENS)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length sentence embeddings, shape (len(texts), hidden)."""
        with torch.inference_mode():
            enc = self._tokenizer(list(texts), padding=True, truncation=True,
                                  max_length=self._max_tokens, return_tensors="pt")
            enc = enc.to(self._device)
            hidden = self._model(**enc).last_hidden_state  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, H)
            return torch.nn.functional.normalize(pooled, dim=-1).float().cpu()

    def score_batch(self, requests: Sequence[tuple[str, ...]]) -> list[tuple[float, ...]]:
        """Scores for several rank requests, their distinct texts embedded together."""
        unique = list(dict.fromkeys(text for texts in requests for text in texts))
        chunks = [self.embed(unique[i:i + _MAX_ROWS]) for i in range(0, len(unique), _MAX_ROWS)]
        table = dict(zip(unique, torch.cat(chunks), strict=True))
        return [_mbr_scores(torch.stack([table[t] for t in texts])) for texts in requests]


def _mbr_scores(embeddings: torch.Tensor) -> tuple[float, ...]:
    """Mean cosine similarity of each row to every other row; rows are unit vectors."""
    count = embeddings.shape[0]
    sims = embeddings @ embeddings.T  # (n, n)
    sims = (sims + sims.T) / 2  # exact symmetry, so equal texts score equally
    others = (sims.sum(dim=1) - sims.diagonal()) / (count - 1)
    return tuple(round(float(s), _DIGITS) for s in others)
