"""`curfew check`: validate a config file."""

from __future__ import annotations

import argparse

from probe.commands.common import EXIT_OK, add_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("check", help="validate a config file and exit 0 (valid) or 2 (invalid)")
    add_config(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.config import load_config

    config = load_config(args.config)
    print(f"{args.config}: ok ({len(config.vantages)} vantages, {len(config.targets)} targets)")
    return EXIT_OK
