"""The `curfew` command line: check, probe, run, lab."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from probe import __version__
from probe.config import Config, ConfigError, load_config

EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_CONFIG = "config/curfew.yaml"

T = TypeVar("T")
log = logging.getLogger("curfew")


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where available (less CPU per probe), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curfew", description="Continuous Internet-censorship measurement.")
    parser.add_argument("--version", action="version", version=f"curfew {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate a config file and exit 0 (valid) or 2 (invalid)")
    check.add_argument("--config", default=DEFAULT_CONFIG)

    probe = sub.add_parser("probe", help="probe every vantage x target")
    probe.add_argument("--config", default=DEFAULT_CONFIG)
    probe.add_argument("--once", action="store_true", help="one round, then exit (the only mode so far)")
    probe.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")

    run = sub.add_parser("run", help="the daemon: probe on a schedule, store, export metrics until stopped")
    run.add_argument("--config", default=DEFAULT_CONFIG)

    db = sub.add_parser("db", help="the measurement database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations (the daemon also does on start)")
    upgrade.add_argument("--config", default=DEFAULT_CONFIG)
    drift = db_sub.add_parser("check", help="exit 1 if the schema differs from what the code expects")
    drift.add_argument("--config", default=DEFAULT_CONFIG)

    lab = sub.add_parser("lab", help="the offline censorship lab")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = lab_sub.add_parser("serve", help="serve a lab scenario on loopback until interrupted")
    serve.add_argument("--scenario", required=True, type=Path)
    serve.add_argument("--state-dir", type=Path, default=Path(".lab"), help="where ca.pem and curfew.yaml go")
    serve.add_argument(
        "--at",
        type=datetime.fromisoformat,
        default=None,
        help="pin the lab's clock to this time (ISO 8601 with offset), so a scenario's windows apply now",
    )
    serve.add_argument(
        "--ephemeral", action="store_true", help="free ports instead of the scenario's (no root needed)"
    )
    return parser


def _load(path: str) -> Config:
    return load_config(path)


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(f"{args.config}: ok ({len(config.vantages)} vantages, {len(config.targets)} targets)")
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from probe.output import to_json_lines, to_table
    from probe.round import run_round

    config = _load(args.config)
    results = _run_async(run_round(config))
    sys.stdout.write(to_json_lines(results) if args.json else to_table(results))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from probe.daemon import logs

    logs.setup()  # before the daemon's imports: some libraries log while being imported
    from probe.daemon.run import run

    return _run_async(run(Path(args.config)))


def cmd_db(args: argparse.Namespace) -> int:
    from probe.daemon.logs import redact
    from probe.store import SchemaDrift, StoreError, check, upgrade

    config = _load(args.config)
    try:
        if args.db_command == "upgrade":
            upgrade(config.database_url)
            print(f"{redact(config.database_url)}: at the latest schema")
        else:
            check(config.database_url)
            print(f"{redact(config.database_url)}: no drift")
    except SchemaDrift as exc:
        print(f"curfew: schema drift: {exc}", file=sys.stderr)
        return 1
    except (StoreError, OSError) as exc:
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    return EXIT_OK


def cmd_lab(args: argparse.Namespace) -> int:
    from probe.lab.lab import serve
    from probe.lab.scenario import ScenarioError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            _run_async(serve(args.scenario, args.state_dir, args.at, ephemeral=args.ephemeral))
    except ScenarioError as exc:
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


COMMANDS = {"check": cmd_check, "probe": cmd_probe, "run": cmd_run, "db": cmd_db, "lab": cmd_lab}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
