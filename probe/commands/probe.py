"""`curfew probe --once`: one round of every vantage x target, as a table or JSON lines."""

from __future__ import annotations

import argparse
import sys

from probe.commands.common import EXIT_OK, add_config, run_async


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("probe", help="probe every vantage x target once")
    add_config(parser)
    parser.add_argument(
        "--once", action="store_true", help="one round, then exit (for schedules: curfew run)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.config import load_config
    from probe.output import to_json_lines, to_table
    from probe.round import run_round

    config = load_config(args.config)
    results = run_async(run_round(config))
    sys.stdout.write(to_json_lines(results) if args.json else to_table(results))
    return EXIT_OK
