"""A simulation spread across processes: its groups, one lab and one event loop per core.

The probe and the lab share one Python process and one core. A simulation is made of groups
(`probe.lab.simulate.groups_of`: sets of (vantage, target) pairs, each probed with its own
agenda, confirmation state, inferred schedules and lab), so `run` deals the groups out to `jobs`
processes, all writing to the same database. A later group borrows the controls an earlier one
lends (`probe.lab.lending`) and waits for it when it is ahead; no group starts without the state
it would have had in one process. The measurements are the same whatever `jobs` is; only the
time taken changes. Ctrl-C (SIGINT to the process group) or SIGTERM makes every worker finish
its current instant and flush what it measured; a worker that fails or dies ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import multiprocessing
import queue as queue_module
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from probe.lab import lending
from probe.lab.scenario import Scenario
from probe.lab.simulate import Group, Progress, Simulation, Summary, groups_of, merge, natural_start, simulate
from probe.runner import run_async

PROGRESS_EVERY = 0.25
"""Seconds of real time between progress reports from a worker."""
STOP_GRACE = 30.0
"""Seconds a worker is given to finish its instant and flush after SIGTERM, before SIGKILL."""


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run with the garbage collector's first generation 20x larger, the objects made so far
    (modules, the fingerprint set) out of its way: a simulation allocates millions of small
    short-lived objects, and the default thresholds spent a twentieth of its time collecting.
    The previous settings come back on exit."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold[0] * 20, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def deal(groups: Sequence[Group], jobs: int) -> list[list[Group]]:
    """`groups` dealt round-robin to at most `jobs` workers (none left empty).

    >>> [[g.index for g in part] for part in deal([Group(i, (("v", f"t{i}"),)) for i in range(5)], 2)]
    [[0, 2, 4], [1, 3]]
    """
    count = max(1, min(jobs, len(groups)))
    return [list(groups[i::count]) for i in range(count)]


async def _guarded(
    scenario: Scenario,
    sim: Simulation,
    url: str,
    state_dir: Path,
    on_progress: Callable[[Progress], None] | None,
    migrate: bool,
    groups: Sequence[Group] | None = None,
) -> Summary:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await simulate(
            scenario, sim, url, state_dir, stop=stop, on_progress=on_progress, migrate=migrate, groups=groups
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _worker(
    index: int,
    scenario: Scenario,
    sim: Simulation,
    groups: list[Group],
    url: str,
    state_dir: Path,
    out: Any,
    ready: Any,
) -> None:
    if not _wait_for(ready):
        return  # the parent is gone: nobody to report to
    last = 0.0

    def report(p: Progress) -> None:
        nonlocal last
        if p.elapsed - last >= PROGRESS_EVERY:
            last = p.elapsed
            out.put(("progress", index, p))

    try:
        with fewer_collections():
            summary = run_async(_guarded(scenario, sim, url, state_dir, report, migrate=False, groups=groups))
    except BaseException as exc:
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise
    out.put(("done", index, summary))


def _wait_for(ready: Any) -> bool:
    """Wait for the parent to say the database and the ledger directory are ready; False if
    the parent died first (it stops its workers itself when it fails)."""
    parent = multiprocessing.parent_process()
    while not ready.wait(1.0):
        if parent is not None and not parent.is_alive():
            return False
    return True


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

    Raises `ValueError` for settings `Simulation.check` refuses (before anything starts),
    `RuntimeError` naming the first worker that failed.
    """
    from probe.store import upgrade

    sim.check(scenario)  # here, not in a worker: before the database is touched
    start = (sim.start or natural_start(scenario)).astimezone(dt.UTC)
    sim = dataclasses.replace(sim, start=start)
    parts = deal(groups_of(scenario, sim), jobs)
    if len(parts) == 1:
        with fewer_collections():
            return run_async(_guarded(scenario, sim, url, Path(state_dir), on_progress, migrate=True))
    lending_dir = Path(state_dir) / "lending"
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    ready = context.Event()
    began = time.monotonic()
    workers = [
        context.Process(
            target=_worker,
            args=(i, scenario, sim, part, url, Path(state_dir), out, ready),
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
        # While the workers start (a second of imports each), the tables are made, once,
        # before several processes could race to create them; and the ledgers cleared, before
        # any worker writes or reads one. Then the workers go.
        upgrade(url)
        lending.clear(lending_dir)
        ready.set()
        latest: dict[int, Progress] = {}
        done: dict[int, Summary] = {}
        errors: list[str] = []
        suspects: set[int] = set()
        while len(done) + len(errors) < len(workers):
            try:
                kind, index, payload = out.get(timeout=0.5)
            except queue_module.Empty:
                if not any(w.is_alive() for w in workers):
                    break
                # Killed without a word (the OOM killer): a later group could wait for its
                # ledger for ever, so the run ends here. Dead at two looks in a row: a worker
                # that failed has its last word read first.
                dead = {i for i, w in enumerate(workers) if i not in done and w.exitcode not in (0, None)}
                errors += [f"job {i}: died ({workers[i].exitcode})" for i in sorted(dead & suspects)]
                suspects = dead
                if errors:
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
                break  # the others would only go on without its loans: stop them
        for w in workers:
            if not errors:
                w.join()
    finally:
        signal.signal(signal.SIGINT, previous)
        for w in workers:
            if w.is_alive():
                with contextlib.suppress(Exception):
                    w.terminate()  # SIGTERM: it finishes its instant and flushes
                w.join(STOP_GRACE)
                if w.is_alive():
                    w.kill()
                    w.join()
        lending.remove(lending_dir)
    if errors or len(done) < len(workers):
        raise RuntimeError(errors[0] if errors else "a simulation worker died")
    end = start + dt.timedelta(days=sim.days)
    return merge([done[i] for i in range(len(workers))], time.monotonic() - began, start, end)


def _overall(latest: dict[int, Progress], parts: list[list[Group]], began: float) -> Progress:
    total = sum(len(p) for p in parts)
    fraction = sum(latest[i].fraction * len(parts[i]) for i in latest) / total
    measurements = sum(p.measurements for p in latest.values())
    now = min(p.now for p in latest.values())
    return Progress(fraction, now, measurements, time.monotonic() - began)
