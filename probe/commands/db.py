"""`curfew db upgrade|check`: the measurement database's schema."""

from __future__ import annotations

import argparse
import sys

from probe.commands.common import EXIT_FAILURE, EXIT_OK, add_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="the measurement database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply schema migrations (the daemon also does on start)")
    add_config(upgrade)
    upgrade.set_defaults(handler=handle)
    drift = db_sub.add_parser("check", help="exit 1 if the schema differs from what the code expects")
    add_config(drift)
    drift.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.config import load_config
    from probe.daemon.logs import redact
    from probe.redaction import redact_url
    from probe.store import SchemaDrift, StoreError, check, upgrade

    config = load_config(args.config)
    where = redact_url(config.database_url)
    try:
        if args.db_command == "upgrade":
            upgrade(config.database_url)
            print(f"{where}: at the latest schema")
        else:
            check(config.database_url)
            print(f"{where}: no drift")
    except SchemaDrift as exc:
        print(f"curfew: schema drift: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (StoreError, OSError) as exc:
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
