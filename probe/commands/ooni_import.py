"""`curfew import --ooni`: OONI Web Connectivity measurements into a curfew store.

    curfew import --ooni 2019-07-*.jsonl.gz --db sqlite:///kz.db
    curfew import --ooni - --db sqlite:///kz.db --target facebook=facebook.com --json < kz.jsonl

Exit status: 0 when any measurement was imported (already present ones count: a re-import is
not a failure), 1 when none was, 2 on bad arguments. Bad lines are reported on stderr with
their file and line number and skipped; a summary ends the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from probe.commands.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, run_async

if TYPE_CHECKING:
    from probe.model import Result
    from probe.ooni.importer import Summary
    from probe.ooni.parse import Imported
    from probe.ooni.read import Progress


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("import", help="import measurements from another format (--ooni: OONI JSON)")
    parser.add_argument(
        "--ooni",
        nargs="+",
        metavar="PATH",
        required=True,
        help="OONI web_connectivity measurements: .json, .jsonl, .jsonl.gz, or - for stdin",
    )
    parser.add_argument("--db", required=True, help="sqlite:///path or postgresql://user:pass@host/db")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=PATTERN",
        help="name the target of matching inputs (a domain and its subdomains, a host glob, or a URL "
        "glob); repeatable, first match wins; default: the input's host",
    )
    parser.add_argument(
        "--vantage",
        action="append",
        default=[],
        metavar="[CC-ASN=]NAME",
        help="name the vantage of probe_cc-probe_asn (KZ-AS9198=kaztelecom), or of every "
        "measurement (a bare NAME); default CC-ASN",
    )
    parser.add_argument(
        "--timezone", default=None, help="IANA zone of new vantages (default: the country's main zone)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per measurement, as curfew probe --json does, "
        "plus measurement_uid and input",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from probe.daemon.logs import redact
    from probe.ooni.importer import Options, import_files
    from probe.ooni.naming import parse_target, parse_vantage
    from probe.ooni.parse import Naming
    from probe.ooni.read import Progress
    from probe.store import StoreError

    try:
        targets = [parse_target(t) for t in args.target]
        vantages = dict(parse_vantage(v) for v in args.vantage)
        if args.timezone is not None:
            ZoneInfo(args.timezone)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.ooni.count("-") > 1:
        print("curfew: error: - (stdin) can be given once", file=sys.stderr)
        return EXIT_USAGE
    options = Options(Naming(vantages, targets), args.timezone)
    interactive = sys.stderr.isatty()
    progress = Progress() if interactive else None
    bar = _Bar(progress) if progress is not None else None
    try:
        summary = run_async(
            import_files(
                args.db,
                args.ooni,
                options,
                report=_report(bar),
                emit=_emit if args.json else None,
                progress=progress,
                tick=bar.update if bar is not None else None,
            )
        )
    except (StoreError, OSError) as exc:
        if bar is not None:
            bar.clear()
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    if bar is not None:
        bar.clear()
    sys.stdout.flush()
    print(summary_line(summary), file=sys.stderr)
    return EXIT_OK if summary.imported else EXIT_FAILURE


def summary_line(s: Summary) -> str:
    """The closing line on stderr.

    >>> from probe.ooni.importer import Summary
    >>> print(summary_line(Summary(read=5, imported=3, new=2, other_tests=1, bad=1, verdicts={"ok": 3})))
    ... # doctest: +NORMALIZE_WHITESPACE
    curfew import: 3 measurements imported (2 new, 1 already stored); verdicts: ok 3;
    1 of another test skipped; 1 bad line skipped
    """
    verdicts = ", ".join(f"{v} {n}" for v, n in sorted(s.verdicts.items(), key=lambda kv: -kv[1]))
    parts = [
        f"curfew import: {s.imported} measurements imported ({s.new} new, {s.duplicates} already stored)"
    ]
    if verdicts:
        parts.append(f"verdicts: {verdicts}")
    if s.other_tests:
        parts.append(f"{s.other_tests} of another test skipped")
    if s.bad:
        parts.append(f"{s.bad} bad line{'s' if s.bad != 1 else ''} skipped")
    if s.unreadable:
        parts.append(f"{s.unreadable} file{'s' if s.unreadable != 1 else ''} could not be read (in full)")
    return "; ".join(parts)


def _emit(imported: Imported, result: Result) -> None:
    import orjson

    from probe.output import result_record

    record: dict[str, Any] = result_record(result)
    record["measurement_uid"] = imported.measurement_uid
    record["input"] = imported.input
    record["ooni_blocking"] = imported.ooni_blocking
    record["ooni_accessible"] = imported.ooni_accessible
    sys.stdout.write(orjson.dumps(record).decode() + "\n")


class _Bar:
    """A one-line progress bar on stderr (a terminal only), redrawn at most twice a second."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._start = time.monotonic()
        self._drawn = 0.0

    def update(self, summary: Summary) -> None:
        now = time.monotonic()
        if now - self._drawn < 0.5:
            return
        self._drawn = now
        p = self._progress
        rate = summary.read / max(now - self._start, 1e-9)
        share = f"{100 * p.bytes_read / p.bytes_total:5.1f}% " if p.bytes_total else ""
        sys.stderr.write(f"\r{share}{summary.read:,} measurements read, {rate:,.0f}/s\x1b[K")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def _report(bar: _Bar | None) -> Any:
    def report(message: str) -> None:
        if bar is not None:
            bar.clear()
        print(f"curfew import: {message}", file=sys.stderr)

    return report
