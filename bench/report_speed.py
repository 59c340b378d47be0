"""How long `curfew report` takes over 90 days x 20 series at 1-minute resolution (~2.6 M rows).

    .venv/bin/python bench/report_speed.py [--days 90] [--vantages 4] [--targets 5] [--runs 3]
                                           [--db PATH]  # keep/reuse the database at PATH

Builds a SQLite database at head (migrations) and fills it through the stdlib driver with
executemany: one measurement per minute per (vantage, target), minimal columns (observations
and analysis '{}'), local_day/local_hour on the vantage's clock (Asia/Almaty), an evening block
20:00-22:10 local every day on half the targets (tls_blocked, connection_reset), 0.5% of probes
inconclusive, and one blackouts row per evening block; `hourly_counts` is then counted from the
measurements (what the writer keeps on insert; `probe.store.rollup.recount`). Then it times
`curfew report` for --format text and json over the whole range: the headline figure is a fresh
process (the command as a user runs it, `python -m probe.cli` start-up and imports included),
then in-process (`probe.cli.main`, imports already paid).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from probe.cli import main
from probe.store import rollup, tables, upgrade
from probe.store.engine import create_sqlite_engine

ZONE = "Asia/Almaty"
START = datetime(2019, 3, 1, tzinfo=UTC)  # UTC+6 all year in 2019
BLOCK_START, BLOCK_MINUTES = 20 * 60, 130  # local minutes of the day


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def build(path: Path, days: int, vantages: int, targets: int) -> int:
    url = f"sqlite:///{path}"
    upgrade(url)
    zone = ZoneInfo(ZONE)
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now = _ts(START)
    conn.executemany(
        "INSERT INTO vantages (name, timezone, control, labels, resolver, active, first_seen, last_seen)"
        " VALUES (?, ?, 0, '{}', 'system', 1, ?, ?)",
        [(f"kz-{v}", ZONE, now, now) for v in range(vantages)],
    )
    insert = (
        "INSERT INTO measurements (uid, started_at, vantage, target, url, verdict, failure, runtime_s,"
        " reason, observations, analysis, local_day, local_hour) VALUES (?, ?, ?, ?, '', ?, ?, 0.1, '',"
        " '{}', '{}', ?, ?)"
    )
    blackouts = []
    rows = 0
    for minute in range(days * 24 * 60):
        at = START + timedelta(minutes=minute)
        local = at.astimezone(zone)
        day, hour, local_minute = local.strftime("%Y-%m-%d"), local.hour, local.hour * 60 + local.minute
        evening = BLOCK_START <= local_minute < BLOCK_START + BLOCK_MINUTES
        stamp = _ts(at)
        batch = []
        for v in range(vantages):
            for t in range(targets):
                blocked = evening and t % 2 == 0
                verdict, failure = ("tls_blocked", "connection_reset") if blocked else ("ok", None)
                if rng.random() < 0.005:
                    verdict, failure = "inconclusive", "generic_timeout_error"
                batch.append((f"{v}-{t}-{minute}", stamp, f"kz-{v}", f"t{t}", verdict, failure, day, hour))
                if blocked and local_minute == BLOCK_START:
                    end = at + timedelta(minutes=BLOCK_MINUTES)
                    blackouts.append(
                        (f"kz-{v}", f"t{t}", _ts(at), _ts(end), BLOCK_MINUTES, _ts(at - timedelta(minutes=1)),
                         stamp, _ts(end - timedelta(minutes=1)), _ts(end), local.strftime("%Y-%m-%d %H:%M"),
                         end.astimezone(zone).strftime("%Y-%m-%d %H:%M"))
                    )  # fmt: skip
        conn.executemany(insert, batch)
        rows += len(batch)
    conn.executemany(
        "INSERT INTO blackouts (vantage, target, started_at, ended_at, verdict, failure, probes, onset_after,"
        " onset_before, offset_after, offset_before, local_start, local_end)"
        " VALUES (?, ?, ?, ?, 'tls_blocked', 'connection_reset', ?, ?, ?, ?, ?, ?, ?)",
        blackouts,
    )
    conn.commit()
    conn.close()
    engine = create_sqlite_engine(url)
    with engine.begin() as sa_conn:
        sa_conn.execute(
            sa.insert(tables.hourly_counts).from_select([*rollup.KEY, *rollup.COUNTS], rollup.counts_query())
        )
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return rows


def _in_process(argv: list[str]) -> float:
    out = io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(out):
        code = main(argv)
    elapsed = time.perf_counter() - t0
    assert code == 0, out.getvalue()[-500:]
    return elapsed


def _subprocess(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "probe.cli", *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main_bench() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--vantages", type=int, default=4)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", type=Path, default=None, help="keep the database here (reused if present)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="curfew-report-bench-") as tmp:
        path = args.db or Path(tmp) / "report.db"
        if not path.exists():
            t0 = time.perf_counter()
            rows = build(path, args.days, args.vantages, args.targets)
            print(f"built {rows:,} measurements in {time.perf_counter() - t0:.1f} s ({path})")
        size = path.stat().st_size / 2**20
        db = sqlite3.connect(path)
        rows = db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
        hours = db.execute("SELECT COUNT(*) FROM hourly_counts").fetchone()[0]
        db.close()
        print(
            f"database: {rows:,} measurements, {hours:,} hourly_counts rows, {size:.0f} MiB,"
            f" cpus {os.cpu_count()}"
        )
        url = f"sqlite:///{path}"
        for fmt in ("text", "json"):
            argv = ["report", "--db", url, "--format", fmt, "--window-days", str(args.days)]
            _subprocess(argv)  # warm: the page cache
            fresh = [_subprocess(argv) for _ in range(args.runs)]
            _in_process(argv)  # warm: imports
            inproc = [_in_process(argv) for _ in range(args.runs)]
            print(
                f"--format {fmt:<5} fresh `curfew report` process median {statistics.median(fresh):.3f} s"
                f" (min {min(fresh):.3f}, max {max(fresh):.3f});"
                f" in-process median {statistics.median(inproc):.3f} s (min {min(inproc):.3f})"
            )


if __name__ == "__main__":
    main_bench()
