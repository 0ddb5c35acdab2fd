"""``experiments:``: served ids that split traffic between arms, with shadows and judges."""

from __future__ import annotations

from pydantic import Field, model_validator

from ensemble.config.base import StrictModel
from ensemble.config.rankers import RankerConfig


class ArmConfig(StrictModel):
    """One arm of an experiment: a served model id (an ensemble, a single model...)."""

    name: str = Field(min_length=1, max_length=64)
    model: str
    weight: float = Field(1.0, ge=0)  # share of live traffic; 0 = shadow-only arm


class ShadowConfig(StrictModel):
    """Also run ``arm`` off the request path for a sample of requests served by another arm."""

    arm: str
    sample_rate: float = Field(1.0, ge=0, le=1)
    max_concurrency: int = Field(1, ge=1)  # shadow requests running at once
    queue_size: int = Field(16, ge=1)  # waiting shadow requests; more are dropped and counted


class ExperimentConfig(StrictModel):
    """A served model id that splits traffic between arms, sticky per user."""

    id: str
    arms: list[ArmConfig] = Field(min_length=2)
    # Stickiness key: the request's ``user`` field, else this header, else a random draw.
    sticky_header: str = "x-blendgate-user"
    shadow: ShadowConfig | None = None
    # Any ranker judges shadow answers (both orders, averaged); None: no judging.
    judge: RankerConfig | None = None
    # |score(B) - score(A)| at or under this is a tie, so float noise never decides a verdict.
    tie_margin: float = Field(0.05, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)  # error level of the intervals and the evidence flag

    @model_validator(mode="after")
    def _check_arms(self) -> ExperimentConfig:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.id!r}: duplicate arm names {names}")
        if sum(arm.weight for arm in self.arms) <= 0:
            raise ValueError(f"experiment {self.id!r}: arm weights sum to 0")
        if self.shadow is not None and self.shadow.arm not in names:
            raise ValueError(f"experiment {self.id!r}: shadow arm {self.shadow.arm!r} is not "
                             f"one of its arms {names}")
        return self

