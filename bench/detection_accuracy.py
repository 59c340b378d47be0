"""Onset/offset errors of detected episodes, with and without watch windows.

    .venv/bin/python bench/detection_accuracy.py [--days 14] [--interval 300] [--keep DIR]

Simulates the accuracy tests' evening scenario (tests/accuracy/scenarios.py: one censored and
one control vantage, `site` TLS-reset every evening 20:00-22:10 Asia/Almaty with each edge a
few seconds to minutes after the minute, from 2024-02-22, across Almaty's change to UTC+5)
twice in parallel processes: with watch windows (the default) and with `watch=False`. Each
time, episodes are detected from the stored rows (`probe.episodes.detect`) and compared with
the true windows; prints the absolute onset and offset errors (median, p90, max), over all
days and over the days after the first three (when a schedule can exist).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.lab.accuracy import Match, match, spread, true_windows
from tests.accuracy.scenarios import ALMATY, RUNS, episodes, evening

LEARNING_DAYS = 3  # infer_pattern's min_days: no schedule, so no watch window, before


def _run(watch: bool, days: int, interval: float, directory: Path) -> tuple[list[Match], int, float]:
    import asyncio

    from probe.lab.simulate import simulate

    sim = dataclasses.replace(RUNS["evening"].sim, days=days, interval=interval, watch=watch)
    scenario = evening(days)
    db = directory / f"watch-{watch}.db"
    began = time.monotonic()
    summary = asyncio.run(simulate(scenario, sim, f"sqlite:///{db}", directory / f"state-{watch}"))
    elapsed = time.monotonic() - began
    span = (summary.start, summary.end)
    windows = [w for rule in scenario.rules for w in true_windows(rule, ALMATY, *span)]
    matches, _ = match([e for e in episodes(db) if e.target == "site"], windows, span)
    return matches, summary.watches, elapsed


def _line(label: str, matches: list[Match]) -> str:
    onset = spread(m.onset_error for m in matches if m.onset_error is not None)
    offset = spread(m.offset_error for m in matches if m.offset_error is not None)
    return f"  {label:<18} onset  {onset}\n  {'':<18} offset {offset}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases in this directory")
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="curfew-accuracy-"))
    directory.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        runs = {w: pool.submit(_run, w, args.days, args.interval, directory) for w in (True, False)}
        results = {w: f.result() for w, f in runs.items()}
    print(f"{args.days} days, base interval {args.interval:.0f} s, confirm_interval 30 s, margin 600 s")
    for watch, (matches, watches, elapsed) in results.items():
        missed = sum(m.episode is None for m in matches)
        title = "with watch windows" if watch else "without (--no-watch)"
        print(f"{title}: {len(matches)} evenings, {missed} missed, {watches} watch probes, {elapsed:.0f} s")
        print(_line("all days", matches))
        print(_line(f"after day {LEARNING_DAYS}", matches[LEARNING_DAYS:]))


if __name__ == "__main__":
    main()
