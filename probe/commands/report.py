"""`curfew report`: the local-hour x date heatmap, recurring schedules and episodes of every
(vantage, target) over a range of local days, as text, CSV, JSON or a PNG.

    curfew report --db sqlite:///kz.db                         # the last 14 days with data
    curfew report --config curfew.yaml --since 2019-05-01 --until 2019-05-31 --target youtube
    curfew report --db sqlite:///kz.db --format png --output kz.png

Bounds: --window-days 1 to 3660; a range wider than 3660 days (--since 0001-01-01) is cut to
the days that have measurements, and exits 2 if those still span more. --output must be a file
in an existing directory (exit 2 before the database is read otherwise).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from datetime import date
from pathlib import Path

from probe.commands.common import DEFAULT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, run_async

FORMATS = ("text", "csv", "json", "png")
MAX_DAYS = 3660
"""The most local days one report shows or infers schedules over (ten years). A wider range is
cut to the days that have measurements, and what is left must fit."""
EARLIEST, LATEST = date(1970, 1, 1), date(9000, 12, 31)
"""Bounds the dates asked of the database (its zone margins must not overflow `date`)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("report", help="heatmap, schedules and episodes of a range of days")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", default=None, help=f"YAML config: its database and zones (default {DEFAULT_CONFIG})"
    )
    source.add_argument("--db", default=None, help="sqlite:///path or postgresql://user:pass@host/db")
    parser.add_argument(
        "--since",
        type=date.fromisoformat,
        default=None,
        help="first local day (YYYY-MM-DD; default: --until minus the window)",
    )
    parser.add_argument(
        "--until",
        type=date.fromisoformat,
        default=None,
        help="last local day, included (default: the latest with data)",
    )
    parser.add_argument("--vantage", action="append", default=[], help="only this vantage (repeatable)")
    parser.add_argument("--target", action="append", default=[], help="only this target (repeatable)")
    parser.add_argument(
        "--window-days",
        type=int,
        default=14,
        help=f"days the schedules are inferred over, ending --until (default 14, at most {MAX_DAYS})",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="text (default), csv, json or png")
    parser.add_argument(
        "--output", type=Path, default=None, help="write here instead of stdout (required for png)"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import orjson

    from probe.daemon.logs import redact
    from probe.export.report import build, render_text, to_json, write_csv
    from probe.redaction import remember
    from probe.store.engine import StoreError
    from probe.store.report import Filters, load

    remember([args.db])  # its password, in whatever form an error message quotes it
    if args.format == "png" and args.output is None:
        print("curfew: error: --format png needs --output FILE", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.window_days <= MAX_DAYS:
        print(f"curfew: error: --window-days must be between 1 and {MAX_DAYS}", file=sys.stderr)
        return EXIT_USAGE
    if args.since is not None and args.until is not None and args.since > args.until:
        print("curfew: error: --since must not be after --until", file=sys.stderr)
        return EXIT_USAGE
    problem = _output_problem(args.output)
    if problem is not None:
        print(f"curfew: error: --output {args.output}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    zones: dict[str, str] = {}
    confirm_count = 2
    url = args.db
    if url is None:
        from probe.config import load_config  # pydantic: only when there is a config to read

        config = load_config(args.config or DEFAULT_CONFIG)
        url = config.database_url
        zones = {v.name: v.timezone for v in config.vantages}
        confirm_count = config.confirm_count
    since = None if args.since is None else min(max(args.since, EARLIEST), LATEST)
    until = None if args.until is None else min(max(args.until, EARLIEST), LATEST)
    filters = Filters(since, until, tuple(args.vantage), tuple(args.target), args.window_days)
    try:
        data = run_async(load(url, filters, zones=zones, confirm_count=confirm_count))
    except (StoreError, OSError) as exc:
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # SQLAlchemy and drivers: refused, unknown host, bad credentials
        print(f"curfew: error: {redact((str(exc).splitlines() or [type(exc).__name__])[0])}", file=sys.stderr)
        return EXIT_FAILURE
    if data is None:
        print(_nothing(args), file=sys.stderr)
        return EXIT_OK
    if (data.until - data.since).days + 1 > MAX_DAYS:
        # Asked for more than a report can show (--since 0001-01-01: 740,000 rows): the days
        # before the first and after the last measurement go, as they would only be empty rows.
        days = sorted({day for (_, _, day, _) in data.cells})
        data.since = max(data.since, date.fromisoformat(days[0]))
        data.until = min(data.until, date.fromisoformat(days[-1]))
        span = (data.until - data.since).days + 1
        if span > MAX_DAYS:
            print(
                f"curfew: error: --since/--until: {data.since} to {data.until} has measurements on "
                f"{span} days; at most {MAX_DAYS} in one report",
                file=sys.stderr,
            )
            return EXIT_USAGE
    report = build(data, args.window_days)
    try:
        if args.format == "png":
            from probe.export.heatmap import write_png

            write_png(report, args.output)
            print(f"{args.output}: {len(report.series)} heatmaps", file=sys.stderr)
            return EXIT_OK
        with ExitStack() as stack:
            out = (
                sys.stdout if args.output is None else stack.enter_context(args.output.open("w", newline=""))
            )
            if args.format == "csv":
                write_csv(report, out)
            elif args.format == "json":
                out.write(orjson.dumps(to_json(report), option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                out.write(render_text(report, colour=args.output is None and sys.stdout.isatty()) + "\n")
    except OSError as exc:  # a full disk, a file that went away, permissions
        print(f"curfew: error: --output {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _output_problem(output: Path | None) -> str | None:
    """Why `output` cannot be written to, found before the database is read; None if it can."""
    if output is None:
        return None
    if output.is_dir():
        return "is a directory (give a file name)"
    parent = output.parent
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    return None


def _nothing(args: argparse.Namespace) -> str:
    if args.since or args.until:
        span = f"from {args.since or 'the start'} to {args.until or 'the latest day'}"
    else:
        span = "in the database"
    filters = "".join(f" --vantage {v}" for v in args.vantage) + "".join(
        f" --target {t}" for t in args.target
    )
    return f"curfew report: no measurements {span}{' for' + filters if filters else ''}; nothing to report"
