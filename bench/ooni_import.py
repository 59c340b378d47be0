"""`curfew import --ooni` on a large generated file: measurements/s and peak RSS.

    .venv/bin/python bench/ooni_import.py [--measurements 1000000] [--keep FILE.jsonl.gz]

The file is made from the spec-shaped measurements of tests/ooni/builders.py: every
technique, classic and LTE test keys, each line with its own measurement_uid and start time
(a month, every vantage of four) and a ~4 KB page body where there is a page, gzip-compressed
as OONI publishes them. The import then runs as a user runs it (`curfew import --ooni FILE
--db sqlite:///...`) in a child process, pinned to one core (taskset) when available: the
rate is measurements over the child's wall time and over its CPU time (the machine may be
shared), its peak RSS from getrusage.
Targets (docs/benchmarks.md): >= 2,000 measurements/s on one core, RSS <= 200 MB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ooni.builders import TECHNIQUES, measurement

ASNS = ("AS9198", "AS48716", "AS21299", "AS206026")


def generate(path: Path, count: int) -> None:
    """`count` measurements; the templates are serialised once and only identities change."""
    templates = []
    for lte in (False, True):
        for technique in TECHNIQUES:
            text = json.dumps(measurement(technique, lte=lte, start="2019-07-01 00:00:00"))
            templates.append(
                text.replace("2019-07-01 00:00:00", "@START@").replace(
                    '"KZ_webconnectivity_', '"KZ_webconnectivity_@N@'
                )
            )
    with gzip.open(path, "wt", compresslevel=1) as out:
        for i in range(count):
            day, second = 1 + i % 30, (i * 7919) % 86400
            start = f"2019-07-{day:02d} {second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}"
            line = templates[i % len(templates)].replace("@START@", start).replace("@N@", f"{i:09d}")
            out.write(
                line.replace('"probe_asn": "AS9198"', f'"probe_asn": "{ASNS[i % len(ASNS)]}"', 1) + "\n"
            )


def run(path: Path, db: Path) -> tuple[float, float, float, str]:
    command = [sys.executable, "-m", "probe.cli", "import", "--ooni", str(path), "--db", f"sqlite:///{db}"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    rss_mb = usage.ru_maxrss / 1024
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, cpu, rss_mb, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measurements", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="generate into (or reuse) this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="curfew-ooni-bench-") as tmp:
        path = args.keep or Path(tmp) / "wc.jsonl.gz"
        if not path.exists():
            t = time.perf_counter()
            generate(path, args.measurements)
            print(
                f"generated {args.measurements:,} measurements ({path.stat().st_size / 1e6:.0f} MB gzip) "
                f"in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
        elapsed, cpu, rss_mb, summary = run(path, Path(tmp) / "bench.db")
        print(summary)
        # On a shared machine the wall clock includes time the core spent on others' work;
        # the CPU time is what the import itself cost (the database's writer thread included).
        print(
            f"{args.measurements:,} measurements in {elapsed:.1f} s wall, {cpu:.1f} s CPU: "
            f"{args.measurements / elapsed:,.0f}/s wall, {args.measurements / cpu:,.0f} per CPU-second "
            f"(one core); peak RSS {rss_mb:.0f} MB; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus"
        )


if __name__ == "__main__":
    main()
