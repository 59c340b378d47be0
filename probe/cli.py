"""The `curfew` command line. Each subcommand lives in its own module under probe/commands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from probe import __version__
from probe.commands import analyze, check, db, export, lab, probe, report, run
from probe.commands.common import EXIT_USAGE
from probe.config import ConfigError
from probe.lab.scenario import ScenarioError

COMMANDS = (check, probe, run, db, lab, analyze, export, report)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="curfew", description="Continuous Internet-censorship measurement.")
    top.add_argument("--version", action="version", version=f"curfew {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ConfigError, ScenarioError) as exc:
        # A bad file is the user's to fix: one line naming the file and the key, no traceback.
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
