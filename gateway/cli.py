"""``blendgate serve | check-config | eval | keys`` (keys_cli.py) and the training subcommands
(training_cli.py).

Parse arguments -> ``load_config`` -> the resolve step (``ensemble.preflight``: model files,
packages, checkpoints, API-key env vars, without loading weights) -> run. A bad config or a
bad ``BLENDGATE_*`` value prints one line (file, key, what is wrong) and exits with status 2,
without a traceback. ``check-config`` runs the same steps as ``serve`` and stops before
loading anything. ``serve`` listens at once and loads the models in the background; a
model that cannot load stops the server and is reported the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ensemble import check_resources, find_problems
from ensemble.config import EnsembleModelConfig
from ensemble.errors import ConfigError
from gateway.app import create_app
from gateway.config import GatewayConfig, load_config
from gateway.drain import DRAIN_MARGIN_S, DrainingServer
from gateway.errors import APIError
from gateway.experiments import reload_experiments
from gateway.keys_cli import add_keys_parser, run_keys
from gateway.settings import GatewaySettings, default_config_path, load_settings, package_version
from gateway.state import state_of
from gateway.training_cli import TRAINING_COMMANDS, add_training_commands, run_training_command

EXIT_CONFIG = 2
logger = logging.getLogger("blendgate")


CONFIG_HELP = ("YAML config (default: the offline default shipped in the package, "
               "gateway/configs/default.yaml; env BLENDGATE_CONFIG)")


def build_parser(settings: GatewaySettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendgate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"blendgate {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_keys_parser(commands, settings.config, CONFIG_HELP)
    serve = commands.add_parser("serve", help="serve the OpenAI-compatible API")
    check = commands.add_parser(
        "check-config", help="validate a config and find what it names (as serve does, "
                             "without loading weights); list served models")
    evaluate = commands.add_parser(
        "eval", help="offline A/B run over a prompt set, a candidate pool (--pool), or a "
                     "judge's agreement with humans",
        description="A/B mode: --prompts SET --models M --baseline B. Pool mode: --pool "
                    "[--models ENSEMBLES] --split dev|test. Agreement mode: "
                    "--agreement hhh,autoj,mt_bench_human --judge RANKER.")
    _serve_arguments(serve, settings)
    _check_config_arguments(check, settings)
    _eval_arguments(evaluate, settings)
    add_training_commands(commands)
    return parser


def _serve_arguments(serve: argparse.ArgumentParser, settings: GatewaySettings) -> None:
    serve.add_argument("--config", type=Path, default=settings.config, help=CONFIG_HELP)
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


def _check_config_arguments(check: argparse.ArgumentParser, settings: GatewaySettings) -> None:
    check.add_argument("config", type=Path, nargs="?", default=settings.config, help=CONFIG_HELP)
    check.add_argument("--schema-only", action="store_true",
                       help="validate the YAML only: skip model files, packages, checkpoints "
                            "and env vars (for a config meant for another host)")


def _eval_arguments(evaluate: argparse.ArgumentParser, settings: GatewaySettings) -> None:
    evaluate.add_argument("--config", type=Path, default=settings.config,
                          help=CONFIG_HELP)
    evaluate.add_argument("--prompts", help="a JSONL file, or alpaca_eval / mt_bench / "
                          "vicuna_bench (read from --data-dir)")
    evaluate.add_argument("--agreement", type=_names, default=[],
                          help="judge agreement mode: comma-separated hhh, autoj, mt_bench_human")
    evaluate.add_argument("--limit", type=int, help="only the first N prompts / pairs")
    evaluate.add_argument("--sample", type=int, help="a seeded random N prompts / pairs from "
                          "the whole set (all categories); samples nest as N grows")
    evaluate.add_argument("--seed", type=int, default=0, help="the --sample seed (default 0)")
    evaluate.add_argument("--models", type=_names, default=[], help="models to judge, comma-separated")
    evaluate.add_argument("--baseline", type=_names, default=[],
                          help="baseline model(s), comma-separated: each model is judged "
                               "against each")
    evaluate.add_argument("--experiment", help="use an experiment's arms (last arm = baseline) "
                          "and its judge")
    evaluate.add_argument("--judge", help="the judge, a ranker config in YAML, e.g. "
                          "'{type: pairrm, checkpoint: llm-blender/PairRM-hf}' (default: the "
                          "experiment's judge, rank_service, or the first ensemble's ranker)")
    evaluate.add_argument("--tie-margin", type=float, help="score difference counted as a tie")
    evaluate.add_argument("--max-tokens", type=int)
    evaluate.add_argument("--temperature", type=float)
    evaluate.add_argument("--concurrency", type=int, default=1, help="answers in flight")
    evaluate.add_argument("--store", help="SQLAlchemy URL of the answer cache (default: the "
                          "config's store, else SQLite in data/)")
    evaluate.add_argument("--data-dir", help="eval data sets (default $BLENDGATE_EVAL_DATA, "
                          "else ../shared/data)")
    evaluate.add_argument("--out", type=Path, default=Path("eval-out"),
                          help="output directory (default eval-out)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("--pool", action="store_true",
                          help="candidate-pool mode: generate each member's candidates once, "
                               "judge them once, score every policy (members, random, rankers, "
                               "oracle, fusers) off that pool; --models picks the ensembles")
    evaluate.add_argument("--split", choices=("dev", "test"),
                          help="a seeded half of the prompt set: tune on dev, report test")
    evaluate.add_argument("--sweep", action="append", default=[],
                          metavar="ENSEMBLE:SETTING=V1,V2,...",
                          help="pool mode: score ENSEMBLE once per value of SETTING (dotted, "
                               "e.g. 'blend-skip:skip_fusion.agreement=0.7,0.8'), off the "
                               "same pool; repeatable")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]



def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"blendgate: environment error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    args = build_parser(settings).parse_args(argv)
    try:
        if args.command == "keys":
            return run_keys(args)
        if args.command in TRAINING_COMMANDS:  # no gateway config needed
            return run_training_command(args)
        config_path = args.config or default_config_path()
        config = load_config(config_path)
        if args.command == "check-config":
            return check_config(config, config_path, schema_only=args.schema_only)
        if args.command == "eval":
            return run_eval(args, config)
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


async def serve(config: GatewayConfig, *, host: str, port: int, log_level: str,
                config_path: Path | None = None) -> None:
    """Listen at once; the models load in the background (``gateway.loading``). A load that
    fails stops the server and is raised here, so a ``ConfigError`` still exits with 2."""
    app = create_app(config, config_path=config_path, load_in_background=True)
    state = state_of(app)
    server = DrainingServer(server_config(app, config, host=host, port=port,
                                          log_level=log_level), state.drain)
    loading = state.loading
    loading.on_failure = lambda exc: setattr(server, "should_exit", True)
    reload_on_sighup(app)
    await server.serve()
    if loading.error is not None:
        raise loading.error


def server_config(
    app: FastAPI, config: GatewayConfig, *, host: str, port: int, log_level: str
) -> uvicorn.Config:
    """uvicorn's settings: SIGTERM drains requests in flight for ``server.drain_grace_s``
    (``gateway.drain`` then ends them; uvicorn cancels what is left ``DRAIN_MARGIN_S`` later)."""
    # uvicorn takes whole seconds; rounding up keeps its backstop after the drain's cut
    backstop_s = math.ceil(config.server.drain_grace_s + DRAIN_MARGIN_S)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          timeout_graceful_shutdown=backstop_s,
                          access_log=False)  # gateway.access logs each request instead


def serve_ray(config: GatewayConfig, *, host: str, port: int, address: str | None) -> None:
    """``serve --engine ray``: the same config as a Ray Serve application (gateway/ray_app.py)."""
    try:
        from gateway.ray_app import serve_on_ray
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Serve: pip install 'blendgate[ray]' ({exc})",
                          key="--engine") from exc
    serve_on_ray(config, host=host, port=port, address=address)


def reload_on_sighup(app: FastAPI) -> None:
    """SIGHUP re-reads the config's ``experiments:``, like ``POST /admin/reload``."""
    state = state_of(app)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await reload_experiments(state)
        except APIError as exc:
            logging.getLogger(__name__).error("SIGHUP: %s", exc)

    def on_sighup() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with contextlib.suppress(NotImplementedError, AttributeError):  # no SIGHUP on Windows
        loop.add_signal_handler(signal.SIGHUP, on_sighup)


def run_eval(args: argparse.Namespace, config: GatewayConfig) -> int:
    from ensemble.experiments import EvalOptions, parse_sweep, pool_lines, summary_lines
    from ensemble.experiments import run_eval as run

    if bool(args.prompts or args.pool) == bool(args.agreement):
        raise ConfigError("blendgate eval: give --prompts (A/B run), --pool (candidate pool) "
                          "or --agreement (judge agreement), not two of them")
    if args.sweep and not args.pool:
        raise ConfigError("blendgate eval: --sweep scores ensemble variants off a candidate "
                          "pool; give --pool with it")
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    options = EvalOptions(
        config=config, out=args.out,
        prompts=args.prompts, agreement=args.agreement, limit=args.limit, sample=args.sample,
        seed=args.seed, models=args.models,
        baselines=args.baseline, experiment=args.experiment, judge=args.judge,
        tie_margin=args.tie_margin, max_tokens=args.max_tokens, temperature=args.temperature,
        concurrency=args.concurrency, store_url=args.store, data_dir=args.data_dir,
        progress=not args.no_progress, pool=args.pool, split=args.split,
        sweeps=[parse_sweep(text) for text in args.sweep])
    result = asyncio.run(run(options))
    if args.pool:
        print("\n".join(pool_lines(result)))
        print(f"written: {args.out / 'pool.json'}, {args.out / 'pool.html'}")
    elif args.agreement:
        print(result["markdown"])
        print(f"\nwritten: {args.out / 'agreement.json'}, {args.out / 'agreement.md'}")
    else:
        print("\n".join(summary_lines(result)))
        print(f"written: {args.out / 'result.json'}, {args.out / 'report.html'}")
    return 0


def check_config(config: GatewayConfig, path: Path, *, schema_only: bool) -> int:
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


def _policy(ensemble: EnsembleModelConfig) -> str:
    """The ensemble's adaptive policy, when it has one (README "Adaptive ensembling")."""
    parts = [f"strategy {ensemble.strategy}"] if ensemble.strategy != "blend" else []
    if ensemble.cascade:
        parts.append(f"cascade {len(ensemble.cascade)} stage(s)")
    if ensemble.skip_fusion is not None:
        parts.append("skip_fusion")
    if ensemble.early_stop is not None:
        parts.append(f"early_stop {ensemble.early_stop.agree}")
    return f"; {', '.join(parts)}" if parts else ""


def describe(config: GatewayConfig) -> str:
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
            f"fuser {ensemble.fuser.type}, top_k {ensemble.top_k}{_policy(ensemble)})"
        )
    for experiment in config.experiments:
        arms = ", ".join(f"{a.name}={a.model} w{a.weight:g}" for a in experiment.arms)
        shadow = f"; shadow {experiment.shadow.arm}" if experiment.shadow else ""
        judge = f"; judge {experiment.judge.type}" if experiment.judge else ""
        lines.append(f"  {experiment.id}  (experiment: {arms}{shadow}{judge})")
    if config.rank_service is not None:
        lines.append(f"  POST /v1/rank, /v1/compare  (rank_service: {config.rank_service.type})")
    if config.fuse_service is not None:
        lines.append(f"  POST /v1/fuse  (fuse_service: {config.fuse_service.type})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
