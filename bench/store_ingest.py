"""Measurements/s into SQLite and PostgreSQL through the daemon's path: Store.submit + flush.

    .venv/bin/python bench/store_ingest.py [--rows 50000] [--batch-size 500]
                                           [--postgres postgresql://curfew:curfew@127.0.0.1:5432/curfew_test]

Rows are realistic: a measurement with DNS, two TCP connects, two TLS handshakes with a
three-certificate chain, an HTTP page (12 headers; its 1 KB body sample is stored only on
non-ok rows) and a sampled bulk download, about 4.5 KB of observations JSON; one in ten is a
tls_blocked measurement. Each
gets a fresh uid and time. They are submitted in chunks of a batch with an await between
(as the daemon does between results), then flushed; the clock runs from the first submit to
the end of flush, so it covers encoding, the spool (write + fsync per batch) and the
database commits. A 1,000-row warm-up runs first (connections, migrations, caches).

PostgreSQL: a fresh database is created on the server named by --postgres (or
CURFEW_TEST_POSTGRES; the role needs CREATEDB) and dropped afterwards; if the server cannot
be reached, a skip line is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from probe.round import Result
from probe.store import Store, tables
from probe.store.engine import create_engine
from probe.store.mapping import result_row
from tests.store.builders import T0, result

TARGETS = {"sqlite": 20_000, "postgresql": 10_000}
DEFAULT_POSTGRES = "postgresql://curfew:curfew@127.0.0.1:5432/curfew_test"


def make_results(n: int, offset: int = 0) -> list[Result]:
    templates = [result(), result("tls_blocked")]
    out = []
    for i in range(n):
        template = templates[1] if i % 10 == 9 else templates[0]
        m = replace(template.measurement, uid=uuid.uuid4().hex, started_at=T0 + timedelta(seconds=offset + i))
        out.append(Result(m, template.analysis))
    return out


async def ingest(url: str, spool: Path, rows: int, batch_size: int) -> dict[str, float]:
    store = await Store.open(url, spool, batch_size=batch_size)
    for r in make_results(1000, offset=-10_000):
        store.submit(r)
    await store.flush()
    work = make_results(rows)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for start in range(0, rows, batch_size):
        for r in work[start : start + batch_size]:
            store.submit(r)
        await asyncio.sleep(0)
    t_submitted = time.perf_counter()
    await store.flush()
    t1, cpu1 = time.perf_counter(), time.process_time()
    errors = store.write_errors
    await store.close()
    engine = create_engine(url)
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(tables.measurements))).scalar_one()
    await engine.dispose()
    if count != rows + 1000 or errors:
        raise SystemExit(f"{url}: expected {rows + 1000} rows, found {count} ({errors} write errors)")
    return {
        "rate": rows / (t1 - t0),
        "submit_us": (t_submitted - t0) / rows * 1e6,
        "cpu_us": (cpu1 - cpu0) / rows * 1e6,
        "seconds": t1 - t0,
    }


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, database=u.database, timeout=3
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def report(backend: str, figures: dict[str, float]) -> None:
    target = TARGETS[backend]
    print(
        f"{backend:<10} {figures['rate']:>9,.0f} measurements/s  ({figures['rate'] / target:.2f}x the "
        f"{target:,}/s target)  submit {figures['submit_us']:.0f} us/row  "
        f"process CPU {figures['cpu_us']:.0f} us/row  [{figures['seconds']:.2f} s]"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--postgres", default=os.environ.get("CURFEW_TEST_POSTGRES", DEFAULT_POSTGRES))
    args = parser.parse_args()

    size = len(result_row(result())["observations"])
    print(f"{args.rows:,} measurements, ~{size:,} bytes of observations JSON each, batch {args.batch_size}")
    with tempfile.TemporaryDirectory(prefix="curfew-store-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'curfew.db'}"
        report("sqlite", await ingest(url, Path(tmp) / "spool-sqlite", args.rows, args.batch_size))

        name = f"curfew_bench_{uuid.uuid4().hex[:8]}"
        try:
            await _admin(args.postgres, f'CREATE DATABASE "{name}"')
        except Exception as exc:  # refused, unreachable, bad credentials: all mean "skip"
            print(f"postgresql skipped: {args.postgres.split('@')[-1]} not reachable ({exc})")
            return
        try:
            pg = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            report("postgresql", await ingest(pg, Path(tmp) / "spool-pg", args.rows, args.batch_size))
        finally:
            await _admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
