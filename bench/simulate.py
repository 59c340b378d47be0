"""`curfew lab simulate`: how long it takes, and whether `--jobs` changes what it measures.

Three measurements, each through the real command line (`python -m probe.cli` as installed:
`.venv/bin/curfew`), on the shipped kazakhstan-2019 scenario from 2019-05-20 Almaty time:

- readme: the README's example, one censored vantage (kz-almaty, controls kept), --days 14;
- whole: every vantage, --days 14;
- repro: the README's example over --repro-days with --jobs 1 and with --jobs 2, the two
  measurement tables compared by content (when, pair, verdict, failure, step, blocking,
  status, issuer, local hour; not ids, URLs with the lab's free ports, or real durations).

    .venv/bin/python bench/simulate.py                      # all three (about 25 minutes today)
    .venv/bin/python bench/simulate.py --only repro --repro-days 2
    .venv/bin/python bench/simulate.py --only readme --days 1

Prints one line per measurement: wall time, measurements, measurements/s, and for repro the
row counts and whether the tables are identical. The figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = "2019-05-20T00:00:00+06:00"
CONTENT = (
    "SELECT started_at, vantage, target, verdict, failure, operation, blocking, http_status, "
    "tls_issuer, local_day, local_hour FROM measurements"
)


def curfew() -> list[str]:
    exe = Path(sys.executable).with_name("curfew")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "probe.cli"]


def simulate(
    directory: Path, name: str, days: float, jobs: int | None, vantages: str | None
) -> tuple[float, int, Path]:
    db = directory / f"{name}.db"
    cmd = [
        *curfew(),
        "lab",
        "simulate",
        "--scenario",
        "kazakhstan-2019",
        "--days",
        str(days),
        "--start",
        START,
    ]
    cmd += ["--db", f"sqlite:///{db}", "--state-dir", str(directory / f"{name}-state")]
    if vantages:
        cmd += ["--vantages", vantages]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    began, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - began
    print(
        f"  {name}: cpu {_children_cpu() - cpu:.1f} s (user+sys, all processes), wall {elapsed:.1f} s",
        flush=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    found = re.match(r"(\d+) measurements", done.stdout)
    count = int(found.group(1)) if found else -1
    return elapsed, count, db


def _children_cpu() -> float:
    """CPU seconds used by finished child processes: on a machine shared with other work the
    wall time says more about the neighbours than about the simulation."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def content(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(CONTENT).fetchall(), key=repr)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=("readme", "whole", "repro"), action="append")
    parser.add_argument("--days", type=float, default=14.0, help="virtual days for readme and whole (14)")
    parser.add_argument("--repro-days", type=float, default=3.0, help="virtual days for repro (3)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases in this directory")
    args = parser.parse_args()
    only = set(args.only or ("readme", "whole", "repro"))
    print(f"cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="curfew-bench-sim-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        if "readme" in only:
            elapsed, count, _ = simulate(directory, "readme", args.days, None, "kz-almaty")
            print(
                f"readme: {args.days:g} days, kz-almaty: {elapsed:.1f} s, {count} measurements, "
                f"{count / elapsed:.0f}/s"
            )
        if "whole" in only:
            elapsed, count, _ = simulate(directory, "whole", args.days, None, None)
            print(
                f"whole: {args.days:g} days, all vantages: {elapsed:.1f} s, {count} measurements, "
                f"{count / elapsed:.0f}/s"
            )
        if "repro" in only:
            tables = {}
            for jobs in (1, 2):
                elapsed, count, db = simulate(
                    directory, f"repro-jobs{jobs}", args.repro_days, jobs, "kz-almaty,kz-astana"
                )
                tables[jobs] = content(db)
                print(f"repro: --jobs {jobs}: {elapsed:.1f} s, {len(tables[jobs])} rows", flush=True)
            same = tables[1] == tables[2]
            print(
                f"repro: {args.repro_days:g} days, --jobs 1 vs --jobs 2: "
                f"{'identical' if same else 'DIFFERENT'}"
            )
            if not same:
                return 1
    print(f"loadavg={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
