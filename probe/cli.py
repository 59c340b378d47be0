"""The `curfew` command line. Each subcommand lives in its own module under probe/commands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from probe import __version__
from probe.commands import analyze, check, db, export, helper, lab, ooni_import, probe, report, run
from probe.commands.common import EXIT_USAGE

COMMANDS = (check, probe, run, db, lab, analyze, export, ooni_import, report, helper)


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
    except Exception as exc:
        if not _bad_file(exc):
            raise
        # A bad file is the user's to fix: one line naming the file and the key, no traceback.
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


def _bad_file(exc: Exception) -> bool:
    """A ConfigError or a ScenarioError. Their modules (pydantic, the lab) are imported only by
    the commands that read such files, not at start-up: a command that did not import them
    cannot have raised them."""
    for module, name in (("probe.config", "ConfigError"), ("probe.lab.scenario", "ScenarioError")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
