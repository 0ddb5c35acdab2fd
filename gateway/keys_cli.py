"""``blendgate keys create | list | revoke``: the budgeted API keys of ``server.keys_file``.

The file is the config's ``server.keys_file`` (``--config``), or ``--file``. ``create`` prints
the new key once, on stdout and alone, so ``KEY=$(blendgate keys create alice)`` works;
nothing else ever shows it. A running gateway sees changes within a second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ensemble.errors import ConfigError
from gateway.config import load_config
from gateway.keys import create_key, read_keys, revoke_key
from gateway.settings import default_config_path


def add_keys_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                    config_default: Path | None, config_help: str) -> None:
    keys = commands.add_parser("keys", help="create, list or revoke budgeted API keys")
    keys.add_argument("--config", type=Path, default=config_default, help=config_help)
    keys.add_argument("--file", type=Path, help="the keys file (default: the config's "
                                                "server.keys_file)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("name", help="the key's name, shown in metrics and logs")
    create.add_argument("--rpm", type=int, help="requests per minute (default: no limit)")
    create.add_argument("--tokens-per-day", type=int,
                        help="tokens per UTC day, ensembles counting every member and the "
                             "fuser (default: no limit)")
    actions.add_parser("list", help="every key's name, limits and state (never the key)")
    revoke = actions.add_parser("revoke", help="stop a key from working")
    revoke.add_argument("name")


def keys_file(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file)
    config_path = args.config or default_config_path()
    path = load_config(config_path).server.keys_file
    if path is None:
        raise ConfigError("no keys file: set server.keys_file or pass --file", path=config_path,
                          key="server.keys_file")
    return Path(path)


def run_keys(args: argparse.Namespace) -> int:
    path = keys_file(args)
    if args.keys_command == "create":
        print(create_key(path, args.name, requests_per_minute=args.rpm,
                         tokens_per_day=args.tokens_per_day))
    elif args.keys_command == "revoke":
        revoke_key(path, args.name)
        print(f"revoked {args.name}")
    else:
        print(f"{'name':24} {'rpm':>8} {'tokens/day':>12} {'created (UTC)':20} state")
        for record in read_keys(path):
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created_at))
            print(f"{record.name:24} {_limit(record.requests_per_minute):>8} "
                  f"{_limit(record.tokens_per_day):>12} {created:20} "
                  f"{'revoked' if record.revoked else 'active'}")
    return 0


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)
