"""Days of probing in minutes: the real probe engine against the lab on a virtual clock.

Every (vantage, target) of the lab's curfew config is probed at its base interval from
`start` for `days`, as the daemon would: a pair whose verdict changes is re-probed every
`confirm_interval` until `probe.daemon.schedule.advance` says the new state is confirmed,
and each run goes through a `Prober`, so controls are shared and every fresh measurement is
judged and stored. Nothing sleeps: virtual time jumps from one due instant to the next.

At each instant the lab's rules are evaluated at that virtual time (`lab.set_time`), the
pairs due then run concurrently, and their measurements carry the virtual time as
`started_at` (step durations stay real). Results go through `probe.store.Store`, so the
output is an ordinary curfew database.

By default every pair fires on one grid (start, start + interval, ...): the runs of an instant
share their controls and overlap their timeouts, which is what makes 14 days of the
Kazakhstan scenario take minutes. `spread=True` uses the daemon's per-pair offsets instead
(slower: one instant per pair and slot).

Watch windows (`watch=True`, the default): a `Monitor` is fed every result, as in the daemon,
and once every 24 h of virtual time the schedules it has inferred so far
(`probe.episodes.pattern`) give each pair extra probes every `confirm_interval` within
`watch_margin` of each predicted local onset and offset for the next 24 h
(`probe.daemon.watch.watch_times`). Before a schedule exists (the first days of a run, or of
each stretch with `--jobs`) only the normal re-probing applies.

    summary = await simulate(load_scenario("kazakhstan-2019"), Simulation(days=14),
                             "sqlite:///kz.db", Path(".sim"))
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from probe.config import Config, parse_config
from probe.daemon.prober import Prober
from probe.daemon.schedule import Confirmation, advance, spread_offset
from probe.daemon.watch import DEFAULT_MARGIN, for_pair, watch_times
from probe.engine import measure
from probe.episodes.monitor import Monitor
from probe.lab.lab import Lab
from probe.lab.scenario import Scenario
from probe.model import Measurement, Result
from probe.store import Store
from probe.vantage import vantage_network

Pair = tuple[str, str]

STEP_TIMEOUT = 0.5
"""Seconds per probe step (DNS, connect, handshake, request): the lab answers in milliseconds,
so anything slower is a block (silence, SYN drop) and need not be waited for longer."""
BULK_BYTES = 256 * 1024
"""The bulk download cap, and the size of the lab's bulk objects in a simulation."""
BULK_SECONDS = 0.3
"""A throttled download is cut after this long; 150 kbit/s still shows as ~5 KB."""
RUN_MARGIN = 5.0
PLAN_EVERY = 86400.0
"""Seconds of virtual time between two plannings of watch windows (the daemon: once a day)."""


@dataclass(frozen=True)
class Simulation:
    """What to simulate. `start` None: the scenario's natural start (see `natural_start`)."""

    days: float
    start: dt.datetime | None = None
    interval: float = 300.0
    confirm_interval: float = 30.0
    confirm_count: int = 2
    loss: float = 0.0
    seed: int | None = None
    spread: bool = False
    """Fire each pair at the daemon's per-pair offset rather than all on one grid."""
    vantages: tuple[str, ...] | None = None
    """Only these vantages (control vantages are always kept: verdicts need them)."""
    targets: tuple[str, ...] | None = None
    """Only these targets (control targets are always kept)."""
    step_timeout: float = STEP_TIMEOUT
    bulk_bytes: int = BULK_BYTES
    bulk_seconds: float = BULK_SECONDS
    concurrency: int = 64
    watch: bool = True
    """Probe every `confirm_interval` around the onsets and offsets of inferred schedules."""
    watch_margin: float = DEFAULT_MARGIN
    """Seconds watched before and after each predicted onset and offset."""

    def check(self) -> None:
        """Raise ValueError for settings no simulation can run with."""
        if self.days <= 0 or self.interval <= 0 or self.confirm_interval <= 0:
            raise ValueError("--days, --interval and --confirm-interval must be > 0")
        if self.confirm_count < 1:
            raise ValueError("--confirm-count must be >= 1")
        if not 0 <= self.loss < 1:
            raise ValueError("--loss must be in [0, 1)")
        if self.step_timeout <= 0 or self.bulk_seconds <= 0 or self.bulk_bytes < 1024:
            raise ValueError("--step-timeout and --bulk-seconds must be > 0, --bulk-bytes >= 1024")
        if self.watch_margin < 0:
            raise ValueError("--watch-margin must be >= 0")


@dataclass(frozen=True)
class Progress:
    """Where a running simulation is: `fraction` of the virtual span done, at virtual `now`."""

    fraction: float
    now: dt.datetime
    measurements: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Measurements per real second so far."""
        return self.measurements / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Summary:
    start: dt.datetime
    end: dt.datetime
    reached: dt.datetime
    """The virtual time the simulation got to (== end unless stopped early)."""
    measurements: int = 0
    runs: int = 0
    confirmations: int = 0
    watches: int = 0
    """Runs made for watch windows only (not also a base slot or a confirmation)."""
    elapsed: float = 0.0
    verdicts: Counter[str] = field(default_factory=Counter)
    stopped: bool = False

    @property
    def rate(self) -> float:
        return self.measurements / self.elapsed if self.elapsed > 0 else 0.0


class VirtualClock:
    """The simulation's time: `now()` is the virtual instant; `monotonic()` follows it too.

    The Prober reads this clock to age shared controls, so they age in virtual time.
    """

    def __init__(self, start: dt.datetime) -> None:
        self.current = start

    def now(self) -> dt.datetime:
        return self.current

    def monotonic(self) -> float:
        return self.current.timestamp()


@dataclass(frozen=True)
class ProbeClock:
    """What the engine gets: the virtual instant for `started_at`, real time for durations."""

    virtual: VirtualClock

    def now(self) -> dt.datetime:
        return self.virtual.current

    def monotonic(self) -> float:
        return time.monotonic()


def natural_start(scenario: Scenario, today: dt.date | None = None) -> dt.datetime:
    """Local midnight (scenario zone) of the day the earliest dated rule starts.

    A scenario whose rules carry no `from` starts at local midnight today.
    """
    zone = ZoneInfo(scenario.timezone)
    starts = [
        window.start
        for rule in scenario.rules
        if rule.when is not None and (window := rule.when.window(scenario.timezone)).start is not None
    ]
    day = min(starts).astimezone(zone).date() if starts else (today or dt.datetime.now(zone).date())
    return dt.datetime.combine(day, dt.time(0), zone).astimezone(dt.UTC)


def prepare(scenario: Scenario, sim: Simulation) -> Scenario:
    """The scenario on free ports, its bulk objects no bigger than the download cap."""
    scenario = scenario.ephemeral()
    targets = [
        t.model_copy(update={"bulk_bytes": min(t.bulk_bytes, sim.bulk_bytes)}) for t in scenario.targets
    ]
    return scenario.model_copy(update={"targets": targets})


def simulation_config(lab_config: dict[str, Any], sim: Simulation) -> Config:
    """The lab's curfew config with the simulation's schedule, short deadlines and filters."""
    data = dict(lab_config)
    step = sim.step_timeout
    data.update(
        interval=sim.interval,
        confirm_interval=sim.confirm_interval,
        confirm_count=sim.confirm_count,
        max_concurrency=sim.concurrency,
        probe={
            "timeouts": {
                "dns": step,
                "tcp_connect": step,
                "tls_handshake": step,
                "http_request": step,
                "throughput": max(step, sim.bulk_seconds),
                "total": 4 * step + max(step, sim.bulk_seconds) + 1,
            },
            "throughput_max_bytes": sim.bulk_bytes,
            "throughput_max_seconds": sim.bulk_seconds,
            "throughput_sample_interval": min(0.05, sim.bulk_seconds / 4),
            "idle_reset_wait": min(0.2, step),
        },
    )
    data["vantages"] = _keep(data["vantages"], sim.vantages, "vantage")
    data["targets"] = _keep(data["targets"], sim.targets, "target")
    return parse_config(data, "<simulation>")


def _keep(entries: list[dict[str, Any]], wanted: Iterable[str] | None, kind: str) -> list[dict[str, Any]]:
    if wanted is None:
        return entries
    wanted = set(wanted)
    unknown = wanted - {e["name"] for e in entries}
    if unknown:
        raise ValueError(f"unknown {kind} {sorted(unknown)[0]!r}")
    return [e for e in entries if e["name"] in wanted or e.get("control")]


class _Agenda:
    """Due instants as unix seconds: each pair's base slots, its watch instants, and at most
    one pending confirmation per pair (a new one replaces it, like the daemon's confirm job)."""

    def __init__(self, config: Config, start: float, end: float, spread: bool) -> None:
        self.end = end
        self._heap: list[tuple[float, int, Pair, str]] = []
        self._seq = 0
        self._intervals: dict[Pair, float] = {}
        self._confirm_at: dict[Pair, float] = {}
        for v in config.vantages:
            for t in config.targets:
                pair = (v.name, t.name)
                interval = t.interval or config.interval
                self._intervals[pair] = interval
                offset = spread_offset(*pair, interval) if spread else 0.0
                self._push(start + offset, pair, "probe")

    def _push(self, when: float, pair: Pair, kind: str) -> None:
        if when < self.end:
            self._seq += 1
            heapq.heappush(self._heap, (round(when, 6), self._seq, pair, kind))

    def confirm(self, pair: Pair, when: float) -> None:
        self._confirm_at[pair] = round(when, 6)
        self._push(when, pair, "confirm")

    def watch(self, pair: Pair, when: float) -> None:
        self._push(when, pair, "watch")

    def peek(self) -> float | None:
        """The earliest instant queued (perhaps a replaced confirmation); None when empty."""
        return self._heap[0][0] if self._heap else None

    def next(self) -> tuple[float, list[Pair], int, int] | None:
        """The next instant, the pairs due at it (in order of first scheduling), how many of
        them are confirmations and how many are due for a watch window only; None when the
        span is done."""
        while self._heap:
            when = self._heap[0][0]
            due: dict[Pair, None] = {}
            watched: set[Pair] = set()
            regular: set[Pair] = set()
            confirmations = 0
            while self._heap and self._heap[0][0] == when:
                _, _, pair, kind = heapq.heappop(self._heap)
                if kind == "probe":
                    self._push(when + self._intervals[pair], pair, "probe")
                    regular.add(pair)
                elif kind == "watch":
                    watched.add(pair)
                elif self._confirm_at.get(pair) == when:
                    del self._confirm_at[pair]
                    confirmations += 1
                    regular.add(pair)
                else:
                    continue  # replaced by a later confirmation
                due[pair] = None
            if due:
                return when, list(due), confirmations, len(watched - regular)
        return None


class _Watch:
    """The daemon's `Monitor`, fed every result, and the watch windows planned from the
    schedules it infers, once every `PLAN_EVERY` seconds of virtual time."""

    def __init__(self, config: Config, sim: Simulation, start: float) -> None:
        zones = {v.name: v.timezone for v in config.vantages}
        self.monitor = Monitor(
            zones,
            open_after=sim.confirm_count,
            close_after=sim.confirm_count,
            min_span=sim.confirm_interval * sim.confirm_count,
        )
        self.intervals = {
            (v.name, t.name): t.interval or config.interval for v in config.vantages for t in config.targets
        }
        self.monitor.set_config(zones, self.intervals)
        self.sim = sim
        self.start = start
        self.next_plan = start

    def plan(self, agenda: _Agenda) -> None:
        """Queue the watch instants of the next `PLAN_EVERY` seconds."""
        begin = dt.datetime.fromtimestamp(self.next_plan, dt.UTC)
        self.next_plan += PLAN_EVERY
        end = dt.datetime.fromtimestamp(self.next_plan, dt.UTC)
        schedules = self.monitor.snapshot(begin).schedules
        for pair, interval in self.intervals.items():
            mine = for_pair(schedules, *pair)
            if not mine:
                continue
            # On the pair's own grid, so watch probes and base slots coincide where they meet.
            phase = self.start + (spread_offset(*pair, interval) if self.sim.spread else 0.0)
            times = watch_times(
                mine,
                begin,
                end,
                confirm_interval=self.sim.confirm_interval,
                margin=self.sim.watch_margin,
                phase=phase,
            )
            for t in times:
                agenda.watch(pair, t.timestamp())


def _controls_first(config: Config, pairs: list[Pair]) -> list[Pair]:
    """Control pairs start first, so the other runs of the instant share them."""
    control_vantages = {v.name for v in config.vantages if v.control}
    control_targets = {t.name for t in config.targets if t.control}
    return sorted(pairs, key=lambda p: p[0] not in control_vantages and p[1] not in control_targets)


async def simulate(
    scenario: Scenario,
    sim: Simulation,
    database_url: str,
    state_dir: Path,
    *,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    migrate: bool = True,
) -> Summary:
    """Run the simulation and write its measurements to `database_url`.

    `state_dir` holds the lab's certificates and the store's spool. Setting `stop` ends the
    run after the current instant; what was measured is written. Raises `ValueError` for an
    unknown vantage/target filter, `StoreError` for a bad database URL. `migrate` False:
    the schema is already at head (a parallel run migrates once, before its workers start).
    """
    sim.check()
    start = (sim.start or natural_start(scenario)).astimezone(dt.UTC)
    end = start + dt.timedelta(days=sim.days)
    stop = stop or asyncio.Event()
    summary = Summary(start=start, end=end, reached=start)
    clock = VirtualClock(start)
    probe_clock = ProbeClock(clock)
    state_dir = Path(state_dir)
    async with Lab(prepare(scenario, sim), state_dir / "lab", loss=sim.loss, seed=sim.seed) as lab:
        config = simulation_config(lab.curfew_config(), sim)
        networks = {v.name: vantage_network(v, config) for v in config.vantages}

        async def measure_pair(vantage: str, target: str) -> Measurement:
            return await measure(config.target(target), networks[vantage], config.probe, probe_clock)

        prober = Prober(config, clock, measure_fn=measure_pair)
        agenda = _Agenda(config, start.timestamp(), end.timestamp(), sim.spread)
        watch = _Watch(config, sim, start.timestamp()) if sim.watch else None
        states: dict[Pair, Confirmation] = {}
        deadline = config.probe.timeouts.total * 2 + RUN_MARGIN
        store = await Store.open(database_url, state_dir / "spool", migrate=migrate)
        began = time.monotonic()
        try:
            await store.sync_inventory(config)
            while not stop.is_set():
                upcoming = agenda.peek()
                if watch is not None and upcoming is not None and upcoming >= watch.next_plan:
                    watch.plan(agenda)  # before anything of the new day runs
                    continue
                if (due := agenda.next()) is None:
                    break
                when, pairs, confirmations, watches = due
                clock.current = dt.datetime.fromtimestamp(when, dt.UTC)
                lab.set_time(clock.current)
                pairs = _controls_first(config, pairs)
                runs = await asyncio.gather(
                    *(asyncio.wait_for(prober.run(*pair), deadline) for pair in pairs), return_exceptions=True
                )
                for pair, results in zip(pairs, runs, strict=True):
                    if isinstance(results, BaseException):
                        if isinstance(results, TimeoutError):
                            continue  # abandoned like the daemon's; the pair fires again later
                        raise results
                    _record(store, results, summary)
                    if watch is not None:
                        for result in results:
                            watch.monitor.observe(result)
                    after = advance(
                        states.get(pair, Confirmation()), results[0].analysis.verdict, sim.confirm_count
                    )
                    states[pair] = after
                    if after.confirming:
                        agenda.confirm(pair, when + sim.confirm_interval)
                summary.runs += len(pairs)
                summary.confirmations += confirmations
                summary.watches += watches
                summary.reached = clock.current
                summary.elapsed = time.monotonic() - began
                if on_progress is not None:
                    span = (end - start).total_seconds()
                    done = (clock.current - start).total_seconds() / span
                    on_progress(Progress(done, clock.current, summary.measurements, summary.elapsed))
            if not stop.is_set():
                summary.reached = end
        finally:
            summary.stopped = stop.is_set()
            await store.close()
            summary.elapsed = time.monotonic() - began
    return summary


def _record(store: Store, results: list[Result], summary: Summary) -> None:
    for result in results:
        store.submit(result)
        summary.measurements += 1
        summary.verdicts[result.analysis.verdict] += 1
