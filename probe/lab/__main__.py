"""``python -m probe.lab serve --scenario FILE [--state-dir DIR] [--at ISO-TIME] [--ephemeral]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from pathlib import Path

from probe.lab.lab import serve
from probe.lab.scenario import ScenarioError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probe.lab")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run a lab scenario until interrupted")
    run.add_argument("--scenario", required=True, help="a YAML file or a shipped name (smoke)")
    run.add_argument("--state-dir", type=Path, default=Path(".lab"), help="where ca.pem and the config go")
    run.add_argument("--at", type=dt.datetime.fromisoformat, help="start the lab clock at this ISO time")
    run.add_argument("--ephemeral", action="store_true", help="use free ports instead of the scenario's")
    args = parser.parse_args(argv)
    at = args.at
    if at is not None and at.tzinfo is None:
        parser.error("--at needs a UTC offset, e.g. 2019-05-09T13:30:00+06:00")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.scenario, args.state_dir, at, ephemeral=args.ephemeral))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
