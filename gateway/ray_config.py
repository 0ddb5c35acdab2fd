"""The ``ray:`` section: ``blendgate serve --engine ray`` deployments' replicas and resources.

Plain pydantic: importing it does not import Ray. ``gateway.ray_app`` turns these into
``Deployment.options(...)`` and hands the batch settings to the library's deployments
(``ensemble.ray_serve``) as plain values.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ensemble.config import StrictModel


class RayAutoscalingConfig(StrictModel):
    """Ray Serve autoscaling on ongoing requests per replica (replaces ``num_replicas``)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RayAutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class RayDeploymentConfig(StrictModel):
    """One Ray Serve deployment's replicas and resources."""

    num_replicas: int = Field(1, ge=1)  # fixed count; ignored when ``autoscaling`` is set
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)  # fractions (0.5) let deployments share a GPU
    max_ongoing_requests: int = Field(64, ge=1)
    autoscaling: RayAutoscalingConfig | None = None


class RayModelDeploymentConfig(RayDeploymentConfig):
    """A ranker or fuser deployment; ``@serve.batch`` gathers calls from every gateway replica."""

    max_batch_size: int = Field(16, ge=1)  # calls (rankings / fuses) per batch
    batch_wait_ms: float = Field(5.0, ge=0)


class RayConfig(StrictModel):
    """``blendgate serve --engine ray``: the gateway and each model as Ray Serve deployments.

    Every distinct model-backed ranker (pairrm, reward_model, consensus) gets a deployment
    with ``ranker``'s settings, every GenFuser one with ``fuser``'s; the gateway (FastAPI
    ingress) gets ``gateway``'s. Other rankers and fusers (llm, none, remote) run in the
    gateway replicas.
    """

    app_name: str = "blendgate"
    gateway: RayDeploymentConfig = Field(default_factory=RayDeploymentConfig)
    ranker: RayModelDeploymentConfig = Field(default_factory=RayModelDeploymentConfig)
    fuser: RayModelDeploymentConfig = Field(default_factory=RayModelDeploymentConfig)


def deployment_options(
    name: str, cfg: RayDeploymentConfig, *, drain_grace_s: float
) -> dict[str, Any]:
    """``Deployment.options(...)`` for one deployment config (replicas, resources, scaling);
    a replica being stopped gets ``drain_grace_s`` (``server.drain_grace_s``) to finish."""
    options: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "graceful_shutdown_timeout_s": drain_grace_s,
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
    }
    if cfg.autoscaling is not None:
        options["autoscaling_config"] = {
            "min_replicas": cfg.autoscaling.min_replicas,
            "max_replicas": cfg.autoscaling.max_replicas,
            "target_ongoing_requests": cfg.autoscaling.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = cfg.num_replicas
    return options
