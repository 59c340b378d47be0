"""Measurements/s into SQLite and PostgreSQL through the daemon's path: Store.submit + flush.

    .venv/bin/python bench/store_ingest.py [--rows 20000] [--runs 3] [--batch-size 500] [--window 4]
                                           [--postgres postgresql://curfew:curfew@127.0.0.1:5432/curfew_test]
                                           [--backend both|sqlite|postgresql] [--prefill N] [--settle 60]

Rows are realistic: a measurement with DNS, two TCP connects, two TLS handshakes with a
three-certificate chain, an HTTP page (12 headers; its 1 KB body sample is stored only on
non-ok rows) and a sampled bulk download, about 4.5 KB of observations JSON; one in ten is a
tls_blocked measurement. Each gets a fresh uid and time.

Two ways of feeding the store, each `--runs` times on a fresh database (median and range):
- sustained (the headline): an await after every 10 submits (the daemon awaits between any
  two results), never more than `--window` batches submitted and not yet written; the
  producer waits for the store, as a load generator with a bounded queue does. This is the
  rate the store keeps up with.
- burst: every row submitted as fast as the loop can (an await per 10, no waiting), then
  flushed: the store works off a backlog of all of them (and holds up to 20,000 in memory).
The clock runs from the first submit to the end of flush, so it covers encoding, the spool
(one write per turn of the loop) and the database commits. A 1,000-row warm-up runs first (connections,
migrations, caches).

--prefill N: the runs go into one database (per backend) that already holds N measurements
(made by one SQL statement: time-ordered uids, 10 vantages x 5 targets, the same
observations; each run adds its rows to it), for the rate after months of use rather than on
the first day. The database is synced and the disk left alone for --settle seconds first:
measured right after writing 5 GB, the disk was still busy and checkpoints took 2-5x longer.
On PostgreSQL the prefill is VACUUM ANALYZEd and CHECKPOINTed first (the role needs
pg_checkpoint for that: GRANT pg_checkpoint TO curfew; without it a line says so).

PostgreSQL: a fresh database per run is created on the server named by --postgres (or
CURFEW_TEST_POSTGRES; the role needs CREATEDB) and dropped afterwards; if the server cannot
be reached, a skip line is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from probe.model import Result
from probe.store import Store, tables
from probe.store.engine import create_engine
from probe.store.mapping import result_row
from probe.store.migrate import upgrade
from probe.uid import new_uid
from tests.conftest import drop_database
from tests.store.builders import T0, result

CHUNK = 10
"""Results submitted between two awaits. The daemon awaits between every two (each comes from
its own probe task); 10 keeps the bench's own loop overhead out of the figures."""
TARGETS = {"sqlite": 20_000, "postgresql": 10_000}
DEFAULT_POSTGRES = "postgresql://curfew:curfew@127.0.0.1:5432/curfew_test"


def make_results(n: int, offset: int = 0) -> list[Result]:
    templates = [result(), result("tls_blocked")]
    out = []
    for i in range(n):
        template = templates[1] if i % 10 == 9 else templates[0]
        m = replace(template.measurement, uid=new_uid(), started_at=T0 + timedelta(seconds=offset + i))
        out.append(Result(m, template.analysis))
    return out


PREFILL_SQL = """
INSERT INTO measurements (uid, started_at, vantage, target, url, verdict, runtime_s, reason,
                          observations, analysis, local_day, local_hour)
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?)
SELECT printf('%012x', 1500000000000 + x * 30000) || '7' || lower(substr(hex(randomblob(10)), 1, 19)),
       datetime(1500000000 + x * 30, 'unixepoch'), 'kz-' || (x % 10), 't' || (x % 5),
       'https://www.facebook.com/', 'ok', 1.0, 'ok', CAST(? AS TEXT), CAST(? AS TEXT), '2017-07-14', 2
FROM n
"""


def sqlite_prefilled(directory: Path, rows: int) -> Path:
    """A database already holding `rows` measurements (older, time-ordered uids, 10 vantages x
    5 targets, the bench's observations)."""
    path = directory / "curfew.db"
    upgrade(f"sqlite:///{path}")
    row = result_row(result())
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(PREFILL_SQL, (rows, row["observations"], row["analysis"]))
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


async def ingest(url: str, spool: Path, rows: int, batch_size: int, window: int | None) -> dict[str, float]:
    """One run; `window` None is a burst."""
    store = await Store.open(url, spool, batch_size=batch_size)
    before = await count_measurements(url)  # 0, or what --prefill and earlier runs left
    for r in make_results(1000, offset=-10_000):
        store.submit(r)
    await store.flush()
    work = make_results(rows)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, rows, CHUNK):
        for r in work[start : start + CHUNK]:
            store.submit(r)
        await asyncio.sleep(0)
        while window is not None and store.spooled > window * batch_size:
            await asyncio.sleep(0.001)
    t_submitted = time.perf_counter()
    await store.flush()
    t1, cpu1 = time.perf_counter(), time.process_time()
    errors = store.write_errors
    await store.close()
    count = await count_measurements(url)
    if count != before + rows + 1000 or errors:
        raise SystemExit(
            f"{url}: expected {before + rows + 1000} rows, found {count} ({errors} write errors)"
        )
    return {
        "rate": rows / (t1 - t0),
        "submit_us": (t_submitted - t0) / rows * 1e6,
        "cpu_us": (cpu1 - cpu0) / rows * 1e6,
        "seconds": t1 - t0,
    }


async def _admin(url: str, sql: str, *params: object) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, database=u.database, timeout=3
    )
    try:
        await conn.execute(sql, *params, timeout=None)
    finally:
        await conn.close()


def report(backend: str, mode: str, runs: list[dict[str, float]]) -> None:
    target = TARGETS[backend]
    runs = sorted(runs, key=lambda f: f["rate"])
    median = runs[len(runs) // 2]
    spread = f"{runs[0]['rate']:,.0f}-{runs[-1]['rate']:,.0f}"
    print(
        f"{backend:<10} {mode:<9} {median['rate']:>7,.0f} measurements/s ({median['rate'] / target:.2f}x the "
        f"{target:,}/s target; {len(runs)} runs {spread})  submit {median['submit_us']:.0f} us/row  "
        f"process CPU {median['cpu_us']:.0f} us/row",
        flush=True,
    )


async def run_sqlite(
    args: argparse.Namespace, window: int | None, big: Path | None
) -> list[dict[str, float]]:
    """Each run on a fresh database, or all of them into the prefilled database `big` (each run
    adds its rows: 1,000,000 -> 1,021,000 -> ...), which is what a database in use sees."""
    out = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="curfew-store-bench-") as tmp:
            url = f"sqlite:///{big or Path(tmp) / 'curfew.db'}"
            out.append(await ingest(url, Path(tmp) / "spool", args.rows, args.batch_size, window))
    return out


PREFILL_POSTGRESQL = """
INSERT INTO measurements (uid, started_at, vantage, target, url, verdict, runtime_s, reason,
                          observations, analysis, local_day, local_hour)
SELECT lpad(to_hex(1500000000000 + x::bigint * 30000), 12, '0') || '7' || substr(md5(x::text), 1, 19),
       to_timestamp(1500000000 + x * 30), 'kz-' || (x % 10), 't' || (x % 5),
       'https://www.facebook.com/', 'ok', 1.0, 'ok', $2::json, $3::json, '2017-07-14', 2
FROM generate_series(1, $1::int) AS x
"""


async def run_postgresql(args: argparse.Namespace, window: int | None) -> list[dict[str, float]]:
    """Each run on a fresh database, or with --prefill all of them into one prefilled database."""
    out = []
    for _ in range(args.runs):
        name = f"curfew_bench_{uuid.uuid4().hex[:8]}"
        await _admin(args.postgres, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            with tempfile.TemporaryDirectory(prefix="curfew-store-bench-") as tmp:
                out.append(await ingest(url, Path(tmp) / "spool", args.rows, args.batch_size, window))
        finally:
            await drop_database(args.postgres, name)
    return out


async def run_postgresql_prefilled(args: argparse.Namespace) -> None:
    """Both modes into one database holding --prefill measurements, made and dropped here."""
    name = f"curfew_bench_{uuid.uuid4().hex[:8]}"
    await _admin(args.postgres, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        t0 = time.perf_counter()
        await asyncio.to_thread(upgrade, url)
        row = result_row(result())
        await _admin(
            url, PREFILL_POSTGRESQL, args.prefill, row["observations"].decode(), row["analysis"].decode()
        )
        await _admin(url, "VACUUM ANALYZE measurements")  # as autovacuum leaves a table in use
        made = time.perf_counter() - t0
        await _checkpoint(url)
        os.sync()
        time.sleep(args.settle)
        print(
            f"postgresql: all runs into one database that held {args.prefill:,} measurements at the start "
            f"(made in {made:.0f} s, then synced and {args.settle} s of rest)",
            flush=True,
        )
        for mode, window in (("sustained", args.window), ("burst", None)):
            runs = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory(prefix="curfew-store-bench-") as tmp:
                    runs.append(await ingest(url, Path(tmp) / "spool", args.rows, args.batch_size, window))
            report("postgresql", mode, runs)
    finally:
        await drop_database(args.postgres, name)


async def _checkpoint(url: str) -> None:
    """Have the server write the prefill out now: else its checkpointer spreads that over the
    next minutes (checkpoint_completion_target), under the runs."""
    import asyncpg

    try:
        await _admin(url, "CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        print("postgresql: no CHECKPOINT (GRANT pg_checkpoint TO the role): the server may still be writing")


async def count_measurements(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(tables.measurements))).scalar_one()
            )
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--window", type=int, default=4, help="batches in flight (sustained)")
    parser.add_argument("--postgres", default=os.environ.get("CURFEW_TEST_POSTGRES", DEFAULT_POSTGRES))
    parser.add_argument("--prefill", type=int, default=0, help="measurements already in the database")
    parser.add_argument("--settle", type=int, default=60, help="seconds of rest after --prefill")
    parser.add_argument("--backend", choices=("both", "sqlite", "postgresql"), default="both")
    args = parser.parse_args()

    size = len(result_row(result())["observations"])
    print(f"{args.rows:,} measurements a run, ~{size:,} bytes of observations each, batch {args.batch_size}")
    if args.backend in ("both", "sqlite"):
        await bench_sqlite(args)
    if args.backend in ("both", "postgresql"):
        await bench_postgresql(args)


async def bench_sqlite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="curfew-store-bench-big-") as tmp:
        big = None
        if args.prefill:
            t0 = time.perf_counter()
            big = sqlite_prefilled(Path(tmp), args.prefill)
            made = time.perf_counter() - t0
            os.sync()  # a database in use for months is on disk, not being written back:
            time.sleep(args.settle)  # let the disk finish with the gigabytes just written
            print(
                f"sqlite: all runs into one database that held {args.prefill:,} measurements at the start "
                f"({big.stat().st_size / 1e9:.1f} GB, made in {made:.0f} s, then synced and "
                f"{args.settle} s of rest)",
                flush=True,
            )
        for mode, window in (("sustained", args.window), ("burst", None)):
            report("sqlite", mode, await run_sqlite(args, window, big))


async def bench_postgresql(args: argparse.Namespace) -> None:
    try:
        await _admin(args.postgres, "SELECT 1")
    except Exception as exc:  # refused, unreachable, bad credentials: all mean "skip"
        print(f"postgresql skipped: {args.postgres.split('@')[-1]} not reachable ({exc})")
        return
    if args.prefill:
        await run_postgresql_prefilled(args)
        return
    for mode, window in (("sustained", args.window), ("burst", None)):
        report("postgresql", mode, await run_postgresql(args, window))


if __name__ == "__main__":
    asyncio.run(main())
