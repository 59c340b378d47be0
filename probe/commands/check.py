"""`curfew check`: validate a config file, and that this machine can run it.

Exit 0: `curfew run` can start on it. Exit 2: one line on stderr naming the file and the key.
Never a traceback: whatever else goes wrong while checking is reported in one line too.
"""

from __future__ import annotations

import argparse
import sys

from probe.commands.common import EXIT_OK, EXIT_USAGE, add_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "check",
        help="validate a config file (and that its directories and metrics port are usable); "
        "exit 0 (valid) or 2 (invalid)",
    )
    add_config(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.config import ConfigError, load_config
    from probe.daemon.logs import redact
    from probe.preflight import preflight

    try:
        config = load_config(args.config)
        notes = preflight(config, args.config)
    except ConfigError as exc:
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug of ours; still one line, and the file it was about
        reason = redact((str(exc).splitlines() or [""])[0])
        print(f"curfew: error: {args.config}: cannot check: {type(exc).__name__}: {reason}", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(f"{args.config}: note: {note}", file=sys.stderr)
    print(f"{args.config}: ok ({len(config.vantages)} vantages, {len(config.targets)} targets)")
    return EXIT_OK
