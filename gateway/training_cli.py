"""``blendgate train-ranker | train-fuser | export-preferences``: the training subcommands.

Each subcommand is one small parser function and one runner; the work is in
``ensemble.training``. They need no gateway config, so ``gateway.cli.main`` runs them before
it loads one. Bad options print one line and exit with status 2, as config errors do.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

TRAINING_COMMANDS = ("train-ranker", "train-fuser", "export-preferences")
EXIT_USAGE = 2  # as gateway.cli's config errors


def add_training_commands(commands: Any) -> None:
    """Add the subcommands to ``commands`` (``ArgumentParser.add_subparsers()``)."""
    add_train_ranker(commands)
    add_train_fuser(commands)
    add_export_preferences(commands)


def run_training_command(args: argparse.Namespace) -> int:
    """Run one subcommand; bad option values -> one line on stderr, status 2."""
    from pydantic import ValidationError

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = {"train-ranker": run_train_ranker, "train-fuser": run_train_fuser,
              "export-preferences": run_export_preferences}[args.command]
    try:
        return runner(args)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: "
                             f"{e['msg']}" for e in exc.errors())
        print(f"blendgate {args.command}: {problems}", file=sys.stderr)
        return EXIT_USAGE


def _common_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N optimizer "
                        "steps (default: the epochs decide; 0: save the starting model "
                        "untrained, a baseline)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--learning-rate", type=float,
                        help="default 2e-5 (train-ranker), 5e-5 (train-fuser, the original's)")
    parser.add_argument("--warmup", type=float, default=0.05, help="share of the steps")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--save-steps", type=int, default=100,
                        help="checkpoint every N steps (for --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint under OUT/trainer")
    parser.add_argument("--cpu-budget-min", type=float,
                        help="stop (evaluate and save) after this much process CPU time, "
                             "counting resumed runs")
    parser.add_argument("--stop-at-step", type=int,
                        help="stop (evaluate and save) at this step, the learning-rate "
                             "schedule still set by --epochs: replays a budget-stopped run")
    parser.add_argument("--data-dir", help="the local data sets (default $BLENDGATE_EVAL_DATA, "
                        "else ../shared/data)")
    parser.add_argument("--limit", type=int, help="a seeded sample of N training examples")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_train_ranker(commands: Any) -> None:
    parser = commands.add_parser(
        "train-ranker", help="train or fine-tune a PairRM ranker on preference pairs",
        description="LLM-Blender's objective (instructgpt loss, both orders shuffled, "
                    "num_pos/num_neg sampling) on transformers' Trainer. OUT gets the ranker "
                    "in PairRM-hf's layout (load it with `type: pairrm, checkpoint: OUT`), "
                    "metrics.jsonl and trainer/ checkpoints.")
    parser.add_argument("--from", dest="start", required=True,
                        help="a PairRM checkpoint to fine-tune, or an encoder (DeBERTa-v2/v3, "
                             "BERT family) for a new head: hub id or directory")
    parser.add_argument("--data", required=True,
                        help="comma-separated: hh_rlhf, pandalm, reward_bench, autoj, hhh, or "
                             "JSONL files (chosen/rejected pairs, MixInstruct records)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eval-data", help="held-out sets (default: --eval-fraction of --data)")
    parser.add_argument("--eval-fraction", type=float, default=0.05)
    parser.add_argument("--metrics", default="bartscore",
                        help="MixInstruct: comma-separated score metrics, averaged")
    parser.add_argument("--sampling", choices=["all_pair", "top_bottom"], default="all_pair")
    parser.add_argument("--num-pos", type=int, default=5)
    parser.add_argument("--num-neg", type=int, default=5)
    parser.add_argument("--source-max-length", type=int,
                        help="default: the checkpoint's (1224 for PairRM; 128 for an encoder)")
    parser.add_argument("--candidate-max-length", type=int,
                        help="default: the checkpoint's (412 for PairRM; 128 for an encoder)")
    _common_training_flags(parser)


def _common_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``CommonTrainingOptions`` fields from ``_common_training_flags``."""
    options = {"out": args.out, "data_dir": args.data_dir, "limit": args.limit,
               "epochs": args.epochs, "max_steps": args.max_steps,
               "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size,
               "grad_accum": args.grad_accum, "warmup": args.warmup, "seed": args.seed,
               "threads": args.threads, "save_steps": args.save_steps, "resume": args.resume,
               "cpu_budget_min": args.cpu_budget_min, "stop_at_step": args.stop_at_step,
               "progress": not args.no_progress}
    if args.learning_rate is not None:
        options["learning_rate"] = args.learning_rate
    return options


def _metric_names(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def run_train_ranker(args: argparse.Namespace) -> int:
    from ensemble.training import TrainRankerOptions, train_ranker

    options = TrainRankerOptions(
        **_common_options(args), start=args.start, data=args.data, eval_data=args.eval_data,
        eval_fraction=args.eval_fraction, metrics=_metric_names(args.metrics),
        sampling=args.sampling, num_pos=args.num_pos, num_neg=args.num_neg,
        source_max_length=args.source_max_length,
        candidate_max_length=args.candidate_max_length)
    print(json.dumps(train_ranker(options), indent=2, default=str))
    return 0


def add_train_fuser(commands: Any) -> None:
    parser = commands.add_parser(
        "train-fuser", help="fine-tune GenFuser (seq2seq) on MixInstruct-format data",
        description="The serving prompt over each record's top-k candidates (by --metrics), "
                    "target = its output; limits 1024 / 128 / 128 as the original. OUT gets "
                    "the model and tokenizer (`fuser: {type: genfuser, checkpoint: OUT}`), "
                    "metrics.jsonl and trainer/ checkpoints.")
    parser.add_argument("--from", dest="start", default="llm-blender/gen_fuser_3b",
                        help="a seq2seq checkpoint (default llm-blender/gen_fuser_3b)")
    parser.add_argument("--data", type=Path, required=True,
                        help="MixInstruct records: JSON array or JSON lines")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--eval-data", type=Path,
                        help="held-out records (default: --eval-fraction of --data)")
    parser.add_argument("--eval-fraction", type=float, default=0.05)
    parser.add_argument("--metrics", default="bartscore",
                        help="comma-separated score metrics that pick the top-k, averaged")
    parser.add_argument("--top-k", type=int, default=3)
    _common_training_flags(parser)


def run_train_fuser(args: argparse.Namespace) -> int:
    from ensemble.training import TrainFuserOptions, train_fuser

    options = TrainFuserOptions(
        **_common_options(args), start=args.start, data=args.data, eval_data=args.eval_data,
        eval_fraction=args.eval_fraction, metrics=_metric_names(args.metrics),
        top_k=args.top_k)
    print(json.dumps(train_fuser(options), indent=2, default=str))
    return 0


def add_export_preferences(commands: Any) -> None:
    parser = commands.add_parser(
        "export-preferences", help="export /v1/feedback and shadow-judge verdicts as "
                                   "preference pairs (JSONL, for train-ranker --data)",
        description="Needs a store with `record_transcripts: true` (the chats and answers). "
                    "Verdict ties and lone votes make no pair.")
    parser.add_argument("--config", type=Path, help="the gateway config whose store to read "
                        "(default: BLENDGATE_CONFIG, else the shipped default)")
    parser.add_argument("--store", help="SQLAlchemy URL of the store (instead of --config)")
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--no-verdicts", action="store_true")
    parser.add_argument("--no-feedback", action="store_true")


def run_export_preferences(args: argparse.Namespace) -> int:
    import asyncio

    from ensemble.config import StoreConfig
    from ensemble.errors import ConfigError
    from ensemble.experiments import StoreUnavailable
    from ensemble.training import export_preferences
    from gateway.config import load_config
    from gateway.settings import default_config_path

    if args.store:
        cfg: StoreConfig | None = StoreConfig(url=args.store)
    else:
        cfg = load_config(args.config or default_config_path()).store_config()
    if cfg is None:
        raise ConfigError("the config has no experiment store (`store:` or `experiments:`)",
                          key="store")
    try:
        counts = asyncio.run(export_preferences(cfg, args.out, verdicts=not args.no_verdicts,
                                                feedback=not args.no_feedback))
    except StoreUnavailable as exc:
        print(f"blendgate export-preferences: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), "pairs": counts}))
    if counts["transcripts"] == 0:
        print("blendgate export-preferences: the store holds no transcripts; set "
              "`store: {record_transcripts: true}` to keep them", file=sys.stderr)
    return 0
