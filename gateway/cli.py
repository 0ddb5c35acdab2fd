"""``blendgate serve | check-config``.

Parse arguments -> ``load_config`` -> run. A bad config prints the ``ConfigError`` (file, key,
what is wrong) and exits with status 2, without a traceback. ``serve`` builds the engine
before uvicorn starts listening, so a model that cannot load is reported the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ensemble.config import BlendgateConfig, EnsembleModelConfig, load_config
from ensemble.engine import BlendEngine
from ensemble.errors import ConfigError
from gateway.app import create_app
from gateway.errors import APIError
from gateway.experiments import reload_experiments
from gateway.settings import GatewaySettings, default_config_path

EXIT_CONFIG = 2


def build_parser(settings: GatewaySettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendgate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--config", type=Path, default=settings.config,
                       help="YAML config (default: configs/default.yaml; env BLENDGATE_CONFIG)")
    serve.add_argument("--host", default=settings.host, help=f"default {settings.host}")
    serve.add_argument("--port", type=int, default=settings.port, help=f"default {settings.port}")
    serve.add_argument("--log-level", default=settings.log_level,
                       choices=["critical", "error", "warning", "info", "debug"])

    check = commands.add_parser("check-config", help="validate a config, list served models")
    check.add_argument("config", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(GatewaySettings()).parse_args(argv)
    try:
        if args.command == "check-config":
            print(describe(load_config(args.config)))
            return 0
        config_path = args.config or default_config_path()
        config = load_config(config_path)
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # httpx logs every upstream request at INFO: one line per member call is noise, and
        # its formatting showed up in the gateway's per-request CPU profile.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
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
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
