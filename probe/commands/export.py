"""`curfew export --ooni`: stored measurements as OONI measurements, one JSON object per line."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from probe.commands.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, run_async


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "export", help="write stored measurements in another format (--ooni: OONI JSON lines) to stdout"
    )
    parser.add_argument(
        "--ooni", action="store_true", required=True, help="OONI measurement format (web_connectivity)"
    )
    parser.add_argument("--db", required=True, help="sqlite:///path or postgresql://user:pass@host/db")
    parser.add_argument("--since", type=_utc, default=None, help="from this time (ISO 8601; naive = UTC)")
    parser.add_argument("--until", type=_utc, default=None, help="before this time (ISO 8601; naive = UTC)")
    parser.add_argument("--vantage", default=None, help="only this vantage")
    parser.add_argument("--target", default=None, help="only this target")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.daemon.logs import redact
    from probe.export.ooni import export
    from probe.redaction import remember
    from probe.store import StoreError

    remember([args.db])  # its password, in whatever form an error message quotes it
    if args.since is not None and args.until is not None and args.since >= args.until:
        print("curfew: error: --since must be before --until", file=sys.stderr)
        return EXIT_USAGE
    skipped: list[str] = []

    def skip(message: str) -> None:
        skipped.append(message)
        print(f"curfew export: {message}", file=sys.stderr)

    try:
        count = run_async(
            export(
                args.db,
                sys.stdout,
                since=args.since,
                until=args.until,
                vantage=args.vantage,
                target=args.target,
                on_skip=skip,
            )
        )
    except (StoreError, OSError) as exc:
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # SQLAlchemy: no such table, unreachable server
        print(f"curfew: error: {redact(str(exc).splitlines()[0])}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.flush()
    corrupt = f"; {len(skipped)} with corrupt stored observations skipped" if skipped else ""
    print(f"{count} measurements exported{corrupt}", file=sys.stderr)
    return EXIT_OK
