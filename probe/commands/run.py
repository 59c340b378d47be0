"""`curfew run`: the daemon."""

from __future__ import annotations

import argparse
from pathlib import Path

from probe.commands.common import add_config, run_async


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "run", help="the daemon: probe on a schedule, store, export metrics until stopped"
    )
    add_config(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.daemon import signals

    # First thing: SIGHUP's default action kills, and the imports below take a second.
    signals.catch_early()
    from probe.daemon import logs

    logs.setup()  # before the daemon's imports: some libraries log while being imported
    from probe.daemon.run import run

    return run_async(run(Path(args.config)))
