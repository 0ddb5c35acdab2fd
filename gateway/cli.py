"""``blendgate serve | check-config``.

Parse arguments -> ``load_config`` -> the resolve step (``ensemble.preflight``: model files,
packages, checkpoints, API-key env vars, without loading weights) -> run. A bad config or a
bad ``BLENDGATE_*`` value prints one line (file, key, what is wrong) and exits with status 2,
without a traceback. ``check-config`` runs the same steps as ``serve`` and stops before
loading anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ensemble.config import BlendgateConfig, EnsembleModelConfig, load_config
from ensemble.engine import BlendEngine
from ensemble.errors import ConfigError
from ensemble.preflight import check_resources, find_problems
from gateway.app import create_app
from gateway.errors import APIError
from gateway.experiments import reload_experiments
from gateway.settings import GatewaySettings, default_config_path, load_settings

EXIT_CONFIG = 2
logger = logging.getLogger("blendgate")


def package_version() -> str:
    try:
        return metadata.version("blendgate")
    except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
        return "unknown (not installed)"


def build_parser(settings: GatewaySettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendgate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"blendgate {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    config_help = ("YAML config (default: the offline default shipped in the package, "
                   "gateway/configs/default.yaml; env BLENDGATE_CONFIG)")
    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--config", type=Path, default=settings.config, help=config_help)
    serve.add_argument("--host", default=settings.host, help=f"default {settings.host}")
    serve.add_argument("--port", type=int, default=settings.port, help=f"default {settings.port}")
    serve.add_argument("--log-level", default=settings.log_level,
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--engine", choices=["process", "ray"], default="process",
                       help="process: everything in this process (default); ray: a Ray Serve "
                            "application (gateway replicas + model deployments, the config's "
                            "ray: section; needs the ray extra)")
    serve.add_argument("--ray-address", default=None,
                       help="with --engine ray: the Ray cluster to join (default: start a "
                            "local Ray, or RAY_ADDRESS)")

    check = commands.add_parser(
        "check-config", help="validate a config and find what it names (as serve does, "
                             "without loading weights); list served models")
    check.add_argument("config", type=Path, nargs="?", default=settings.config, help=config_help)
    check.add_argument("--schema-only", action="store_true",
                       help="validate the YAML only: skip model files, packages, checkpoints "
                            "and env vars (for a config meant for another host)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"blendgate: environment error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    args = build_parser(settings).parse_args(argv)
    try:
        config_path = args.config or default_config_path()
        config = load_config(config_path)
        if args.command == "check-config":
            return check_config(config, config_path, schema_only=args.schema_only)
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        for warning in check_resources(config, path=config_path):
            logger.warning("%s: %s: %s", config_path, warning.key, warning.message)
        # httpx logs every upstream request at INFO: one line per member call is noise, and
        # its formatting showed up in the gateway's per-request CPU profile.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
        if args.engine == "ray":
            serve_ray(config, host=args.host, port=args.port, address=args.ray_address)
            return 0
        asyncio.run(serve(config, host=args.host, port=args.port, log_level=args.log_level,
                          config_path=Path(config_path)))
    except ConfigError as exc:
        print(f"blendgate: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return 0


async def serve(config: BlendgateConfig, *, host: str, port: int, log_level: str,
                config_path: Path | None = None) -> None:
    engine = await BlendEngine.from_config(config)
    try:
        app = create_app(config, engine=engine, config_path=config_path)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        _reload_on_sighup(app)
        await server.serve()
    finally:
        await engine.aclose()


def serve_ray(config: BlendgateConfig, *, host: str, port: int, address: str | None) -> None:
    """``serve --engine ray``: the same config as a Ray Serve application (gateway/ray_app.py)."""
    try:
        from gateway.ray_app import serve_on_ray
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Serve: pip install 'blendgate[ray]' ({exc})",
                          key="--engine") from exc
    serve_on_ray(config, host=host, port=port, address=address)


def _reload_on_sighup(app: FastAPI) -> None:
    """SIGHUP re-reads the config's ``experiments:``, like ``POST /admin/reload``."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await reload_experiments(app)
        except APIError as exc:
            logging.getLogger(__name__).error("SIGHUP: %s", exc)

    def on_sighup() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, on_sighup)


def check_config(config: BlendgateConfig, path: Path, *, schema_only: bool) -> int:
    """check-config: every finding on stderr (errors and warnings), the served models on
    stdout when nothing is fatal."""
    findings = [] if schema_only else find_problems(config)
    for finding in findings:
        kind = "config error" if finding.fatal else "warning"
        print(f"blendgate: {kind}: {path}: {finding.key}: {finding.message}", file=sys.stderr)
    if any(f.fatal for f in findings):
        return EXIT_CONFIG
    print(describe(config))
    return 0


def describe(config: BlendgateConfig) -> str:
    """One line per served model: id, kind and members."""
    lines = ["config OK; serving:"]
    ensembles = {m.id: m for m in config.models if isinstance(m, EnsembleModelConfig)}
    for model_id in config.served_model_ids():
        ensemble = ensembles.get(model_id)
        if ensemble is None:
            lines.append(f"  {model_id}  (single)")
            continue
        members = ", ".join(f"{m.backend} x{m.samples}" for m in ensemble.members)
        lines.append(
            f"  {model_id}  (ensemble: {members}; ranker {ensemble.ranker.type}, "
            f"fuser {ensemble.fuser.type}, top_k {ensemble.top_k})"
        )
    if config.rank_service is not None:
        lines.append(f"  POST /v1/rank, /v1/compare  (rank_service: {config.rank_service.type})")
    if config.fuse_service is not None:
        lines.append(f"  POST /v1/fuse  (fuse_service: {config.fuse_service.type})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
