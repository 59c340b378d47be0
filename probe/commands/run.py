"""`curfew run`: the daemon."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from probe.commands.common import EXIT_FAILURE, add_config, run_async


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
    # Outside systemd (which sets UMask=) too: the database, the spool and *.rejected hold
    # measurements and are for this user and its group only (0640, directories 0750).
    os.umask(0o027)
    from probe.config import load_config
    from probe.daemon import lock
    from probe.daemon.run import run
    from probe.preflight import preflight

    config = load_config(args.config)
    preflight(config, args.config)  # a port in use, a read-only data_dir: one line, exit 2
    try:
        held = lock.acquire(config.data_dir)  # one daemon per data_dir, before it touches anything
    except (lock.DataDirInUse, OSError) as exc:
        reason = exc if isinstance(exc, lock.DataDirInUse) else f"data_dir {config.data_dir}: {exc.strerror}"
        print(f"curfew: error: {args.config}: {reason}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        return run_async(run(Path(args.config), config=config))  # the config the lock was taken for
    finally:
        os.close(held)
