"""blendgate as a Ray Serve application: ``blendgate serve --engine ray`` or ``serve run``.

Deployments (replicas and resources from the config's ``ray:`` section):

- ``gateway``: the FastAPI gateway (``create_app``) as the ingress, N CPU replicas. Same
  routes, errors, metrics and transparency field as one process; its engine ranks and fuses
  through the model deployments below.
- ``ranker-0``, ``ranker-1``...: one per distinct model ranker config (PairRM, reward model,
  consensus), ``num_gpus`` may be a fraction; ``@serve.batch`` gathers the rankings of every
  gateway replica (``ensemble.ray_serve.RankerModel``).
- ``fuser-0``...: one per distinct GenFuser config, streaming ``@serve.batch``.

Members stay OpenAI-compatible URLs (vLLM servers, or vLLM on the same Ray cluster).

Import path for Ray's own CLI (an application builder; ``config`` is the YAML path)::

    serve run gateway.ray_app:app_builder config=configs/vllm-three-models.yaml

``/metrics`` gathers every gateway replica's own metrics (``handle.broadcast``), each sample
labelled ``replica`` (``gateway/replica_metrics.py``).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from ensemble import BlendEngine
from ensemble.config import (
    BackendConfig,
    BlendgateConfig,
    EnsembleModelConfig,
    FuserConfig,
    RankerConfig,
)
from ensemble.ray_serve import (
    MODEL_FUSERS,
    MODEL_RANKERS,
    FuserModel,
    RankerModel,
    config_key,
    fuser_backends,
    ray_builders,
)
from gateway.app import create_app
from gateway.config import GatewayConfig, load_config
from gateway.deps import Engine
from gateway.ray_config import deployment_options
from gateway.replica_metrics import ReplicaMetricsMiddleware
from gateway.settings import default_config_path
from gateway.state import state_of

logger = logging.getLogger(__name__)
METRICS_TIMEOUT_S = 5.0


@serve.ingress()
class GatewayIngress:
    """The gateway app, built in each replica after the model deployments' handles arrive."""

    def __init__(
        self,
        config_json: str,
        rankers: Mapping[str, DeploymentHandle],
        fusers: Mapping[str, DeploymentHandle],
    ) -> None:
        self._config = GatewayConfig.model_validate_json(config_json)
        self._builders = ray_builders(rankers, fusers)
        context = serve.get_replica_context()
        self._replica = context.replica_id.unique_id
        self._app_name, self._deployment = context.app_name, context.deployment
        self._app: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        ranker_builder, fuser_builder = self._builders

        async def build_engine(config: BlendgateConfig) -> Engine:
            return await BlendEngine.from_config(
                config, ranker_builder=ranker_builder, fuser_builder=fuser_builder)

        self._app = create_app(self._config, build_engine=build_engine)
        self._app.add_middleware(ReplicaMetricsMiddleware, collect=self._every_replica)
        return self._app

    def metrics_exposition(self) -> tuple[str, bytes]:
        """This replica's own metrics (the gateway's Prometheus registry)."""
        return self._replica, state_of(self._app).metrics.exposition()

    async def _every_replica(self) -> dict[str, bytes]:
        handle = serve.get_deployment_handle(self._deployment, self._app_name)
        results = await handle.broadcast("metrics_exposition").results_async(
            timeout_s=METRICS_TIMEOUT_S, return_exceptions=True)
        answers: dict[str, bytes] = dict(r for r in results if isinstance(r, tuple))
        if len(answers) < len(results):
            logger.warning("/metrics: %d of %d gateway replicas did not answer",
                           len(results) - len(answers), len(results))
        return answers or dict([self.metrics_exposition()])


def model_rankers(config: BlendgateConfig) -> list[RankerConfig]:
    """Distinct ranker configs that hold a model (ensembles' and ``rank_service``)."""
    found = [m.ranker for m in config.models if isinstance(m, EnsembleModelConfig)]
    found += [config.rank_service] if config.rank_service is not None else []
    return list({config_key(c): c for c in found if c.type in MODEL_RANKERS}.values())


def model_fusers(config: BlendgateConfig) -> list[FuserConfig]:
    found = [m.fuser for m in config.models if isinstance(m, EnsembleModelConfig)]
    found += [config.fuse_service] if config.fuse_service is not None else []
    return list({config_key(c): c for c in found if c.type in MODEL_FUSERS}.values())


def build_application(config: GatewayConfig) -> Application:
    """The Serve application for ``config``: ingress bound to its model deployments."""
    ray_cfg, grace = config.ray, config.server.drain_grace_s
    ranker, fuser = ray_cfg.ranker, ray_cfg.fuser
    rankers = {
        config_key(cfg): serve.deployment(RankerModel).options(
            **deployment_options(f"ranker-{i}", ranker, drain_grace_s=grace)
        ).bind(cfg.model_dump_json(), ranker.max_batch_size, ranker.batch_wait_ms)
        for i, cfg in enumerate(model_rankers(config))
    }
    backends = config.backend_configs()  # as built: server.default_max_tokens applied
    fusers = {
        config_key(cfg): serve.deployment(FuserModel).options(
            **deployment_options(f"fuser-{i}", fuser, drain_grace_s=grace)
        ).bind(cfg.model_dump_json(), _backends_json(fuser_backends(cfg, backends)),
               fuser.max_batch_size, fuser.batch_wait_ms)
        for i, cfg in enumerate(model_fusers(config))
    }
    ingress = serve.deployment(GatewayIngress).options(
        **deployment_options("gateway", ray_cfg.gateway, drain_grace_s=grace))
    return ingress.bind(config.model_dump_json(), rankers, fusers)


def _backends_json(backends: Mapping[str, BackendConfig]) -> str:
    return TypeAdapter(dict[str, BackendConfig]).dump_json(dict(backends)).decode()


def app_builder(args: dict[str, str]) -> Application:
    """``serve run gateway.ray_app:app_builder config=PATH``."""
    return build_application(load_config(args.get("config") or default_config_path()))


def serve_on_ray(
    config: GatewayConfig, *, host: str, port: int, address: str | None = None
) -> None:
    """Start (or join) Ray, run the application on ``host:port`` and block until Ctrl-C or
    SIGTERM; then shut the application down (replicas drain for ``server.drain_grace_s``)."""
    import ray

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_application(config), name=config.ray.app_name, route_prefix="/")
    logger.info("blendgate on Ray Serve: http://%s:%d (Ctrl-C stops)", host, port)
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()
