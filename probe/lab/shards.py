"""A long simulation split by time across processes: one lab and one event loop per core.

The probe and the lab share one Python process and one core, so `run` cuts the span into
`jobs` consecutive stretches on the interval grid and simulates each in its own process,
all writing to the same database. Each stretch starts with fresh confirmation state, as the
daemon does after a restart, and learns its schedules for watch windows afresh (the daemon
would seed them from the database). Ctrl-C (SIGINT to the process group) or SIGTERM makes every
worker finish its current instant and flush what it measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import multiprocessing
import queue as queue_module
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from probe.lab.scenario import Scenario
from probe.lab.simulate import Progress, Simulation, Summary, natural_start, simulate

PROGRESS_EVERY = 0.25
"""Seconds of real time between progress reports from a worker."""


def stretches(sim: Simulation, start: dt.datetime, jobs: int) -> list[Simulation]:
    """`sim` from `start` cut into at most `jobs` consecutive simulations on the interval grid.

    >>> s = stretches(Simulation(days=1), dt.datetime(2019, 5, 1, tzinfo=dt.UTC), 2)
    >>> [(x.start.hour, x.days) for x in s]
    [(0, 0.5), (12, 0.5)]
    """
    slots = math.ceil(sim.days * 86400 / sim.interval)
    per = math.ceil(slots / max(1, min(jobs, slots)))
    out: list[Simulation] = []
    for first in range(0, slots, per):
        span = min(per * sim.interval, sim.days * 86400 - first * sim.interval)
        begin = start + dt.timedelta(seconds=first * sim.interval)
        seed = None if sim.seed is None else sim.seed + len(out)
        out.append(dataclasses.replace(sim, start=begin, days=span / 86400, seed=seed))
    return out


def merge(summaries: list[Summary], elapsed: float) -> Summary:
    first, last = summaries[0], summaries[-1]
    total = Summary(start=first.start, end=last.end, reached=min(s.reached for s in summaries))
    for s in summaries:
        total.measurements += s.measurements
        total.runs += s.runs
        total.confirmations += s.confirmations
        total.watches += s.watches
        total.verdicts.update(s.verdicts)
        total.stopped |= s.stopped
    if not total.stopped:
        total.reached = last.end
    total.elapsed = elapsed
    return total


async def _guarded(
    scenario: Scenario,
    sim: Simulation,
    url: str,
    state_dir: Path,
    on_progress: Callable[[Progress], None] | None,
    migrate: bool,
) -> Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await simulate(
            scenario, sim, url, state_dir, stop=stop, on_progress=on_progress, migrate=migrate
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _worker(index: int, scenario: Scenario, sim: Simulation, url: str, state_dir: Path, out: Any) -> None:
    from probe.runner import run_async

    last = 0.0

    def report(p: Progress) -> None:
        nonlocal last
        if p.elapsed - last >= PROGRESS_EVERY:
            last = p.elapsed
            out.put(("progress", index, p))

    try:
        summary = run_async(_guarded(scenario, sim, url, state_dir, report, migrate=False))
    except BaseException as exc:
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise
    out.put(("done", index, summary))


def run(
    scenario: Scenario,
    sim: Simulation,
    url: str,
    state_dir: Path,
    *,
    jobs: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
) -> Summary:
    """Simulate in `jobs` processes (1: in this one) and return the merged summary.

    Raises `RuntimeError` naming the first worker that failed.
    """
    from probe.runner import run_async
    from probe.store import upgrade

    start = (sim.start or natural_start(scenario)).astimezone(dt.UTC)
    parts = stretches(sim, start, jobs)
    if len(parts) == 1:
        return run_async(_guarded(scenario, parts[0], url, Path(state_dir), on_progress, migrate=True))
    upgrade(url)  # once, before several processes could race to create the tables
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    began = time.monotonic()
    workers = [
        context.Process(
            target=_worker,
            args=(i, scenario, part, url, Path(state_dir) / f"job{i}", out),
            name=f"curfew-simulate-{i}",
        )
        for i, part in enumerate(parts)
    ]
    # The workers get Ctrl-C themselves (same process group) and stop cleanly; here it only
    # means "wait for them".
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for w in workers:
            w.start()
        latest: dict[int, Progress] = {}
        done: dict[int, Summary] = {}
        errors: list[str] = []
        while len(done) + len(errors) < len(workers):
            try:
                kind, index, payload = out.get(timeout=0.5)
            except queue_module.Empty:
                if not any(w.is_alive() for w in workers):
                    break
                continue
            if kind == "progress":
                latest[index] = payload
                if on_progress is not None:
                    on_progress(_overall(latest, parts, began))
            elif kind == "done":
                done[index] = payload
                latest[index] = Progress(1.0, payload.reached, payload.measurements, payload.elapsed)
            else:
                errors.append(f"job {index}: {payload}")
        for w in workers:
            w.join()
    finally:
        signal.signal(signal.SIGINT, previous)
        for w in workers:
            if w.is_alive():
                with contextlib.suppress(Exception):
                    w.terminate()
    if errors or len(done) < len(workers):
        raise RuntimeError(errors[0] if errors else "a simulation worker died")
    return merge([done[i] for i in range(len(workers))], time.monotonic() - began)


def _overall(latest: dict[int, Progress], parts: list[Simulation], began: float) -> Progress:
    total_days = sum(p.days for p in parts)
    fraction = sum(latest[i].fraction * parts[i].days for i in latest) / total_days
    measurements = sum(p.measurements for p in latest.values())
    now = min(p.now for p in latest.values())
    return Progress(fraction, now, measurements, time.monotonic() - began)
