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
(`probe.daemon.watch.watch_times`). Before a schedule exists (the first days of a run) only
the normal re-probing applies.

The pairs are split into groups (`groups_of`), each a world of its own that borrows the
controls an earlier group lends (`probe.lab.lending`): with `--jobs` they run side by side in
processes (`probe.lab.shards`), and what is measured does not change.

    summary = await simulate(load_scenario("kazakhstan-2019"), Simulation(days=14),
                             "sqlite:///kz.db", Path(".sim"))
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from probe.config import Config, parse_config
from probe.daemon.agenda import Agenda, intervals_of
from probe.daemon.prober import Prober, controls_of, own_result
from probe.daemon.watch import DEFAULT_MARGIN
from probe.engine import measure
from probe.episodes.monitor import Monitor
from probe.lab import lending
from probe.lab.lab import Lab
from probe.lab.memnet import MemoryNetwork, VirtualLoop
from probe.lab.scenario import Scenario, TargetSpec, VantageSpec
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
    network: str = "memory"
    """"memory": the lab in process on virtual time (`probe.lab.memnet`: fast, and the same
    measurements however loaded the machine is); "kernel": the real-socket lab on loopback
    (real step durations; for comparing the two)."""

    def check(self, scenario: Scenario) -> None:
        """Raise ValueError for settings no simulation of `scenario` can run with (a vantage or
        target filter naming none of its vantages or probed targets included)."""
        for kind, wanted, known in (
            ("vantage", self.vantages, {v.name for v in scenario.vantages}),
            ("target", self.targets, {t.name for t in scenario.targets if t.probe}),
        ):
            unknown = set(wanted or ()) - known
            if unknown:
                raise ValueError(f"unknown {kind} {sorted(unknown)[0]!r}")
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
        if self.network not in ("memory", "kernel"):
            raise ValueError("--network must be memory or kernel")


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
class LoopClock:
    """The clock of a probe on `VirtualLoop`: the loop's virtual time, for instants and
    durations alike (both deterministic)."""

    loop: asyncio.AbstractEventLoop

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.loop.time(), dt.UTC)

    def monotonic(self) -> float:
        return self.loop.time()


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


def prepare_memory(scenario: Scenario, sim: Simulation) -> Scenario:
    """The scenario with its bulk objects no bigger than the download cap (ports as given:
    nothing listens on them in memory)."""
    targets = [
        t.model_copy(update={"bulk_bytes": min(t.bulk_bytes, sim.bulk_bytes)}) for t in scenario.targets
    ]
    return scenario.model_copy(update={"targets": targets})


def prepare(scenario: Scenario, sim: Simulation) -> Scenario:
    """The scenario on free ports, its bulk objects no bigger than the download cap."""
    scenario = scenario.ephemeral()
    targets = [
        t.model_copy(update={"bulk_bytes": min(t.bulk_bytes, sim.bulk_bytes)}) for t in scenario.targets
    ]
    return scenario.model_copy(update={"targets": targets})


def simulation_config(lab_config: dict[str, Any], sim: Simulation) -> Config:
    """The lab's curfew config with the simulation's schedule, short deadlines and filters
    (control vantages and control targets always kept)."""
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
    data["vantages"] = _keep(data["vantages"], sim.vantages)
    data["targets"] = _keep(data["targets"], sim.targets)
    return parse_config(data, "<simulation>")


def _keep(entries: list[dict[str, Any]], wanted: Iterable[str] | None) -> list[dict[str, Any]]:
    """The entries named in `wanted` (all when None), and the controls (names: `Simulation.check`)."""
    if wanted is None:
        return entries
    return [e for e in entries if e["name"] in wanted or e.get("control")]


PARTS = 2
"""How many groups a simulation's pairs are split into (one when there is nothing to split). A
constant of the simulation, never derived from `--jobs` or the machine: the groups decide what
is measured, `--jobs` only where they run."""

EXTRA = 0.25
"""The work a censored pair brings beyond its base grid, as a share of it, for weighing the
split: confirmation re-probes and watch windows, each with fresh controls (in the README's 14
days of kazakhstan-2019, 806 probes per 4,032 base probes of every pair, and about a quarter
more CPU in the group that makes them)."""

SEARCHED = 8
"""Up to this many targets to split, every way of splitting them is weighed; beyond, they are
dealt greedily, heaviest first."""


@dataclass(frozen=True)
class Group:
    """A part of the simulation's (vantage, target) pairs, probed in one world of its own (its
    own agenda, Prober, Monitor and lab). The group schedules and stores the pairs it owns.

    The controls its verdicts need (the control targets at its vantages, its targets at the
    control vantages) are its own pairs, or lent by an earlier group that measured them at
    that moment (`probe.lab.lending`), or else measured by the group itself. It stores such a
    measurement when an earlier group owns the pair: nobody else measured it then, and the
    daemon would have measured and stored it too. It does not store one that a later group
    owns.

    Groups share nothing but those loans, and a loan depends only on what the earlier group
    measured. So a run is the same whether the groups go one after another in one process or
    side by side in several (`probe.lab.shards`): `--jobs` changes the speed, never the
    measurements.
    """

    index: int
    pairs: tuple[Pair, ...]
    """The (vantage, target) pairs this group schedules and stores."""

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for _, t in self.pairs))


@dataclass(frozen=True)
class _Way:
    """One way to place a target's pairs in the two groups, and the work each group gets."""

    first: tuple[Pair, ...]
    second: tuple[Pair, ...]
    load: tuple[float, float]

    @property
    def split(self) -> bool:
        return bool(self.first and self.second)


def groups_of(scenario: Scenario, sim: Simulation) -> list[Group]:
    """The groups of a simulation, in a fixed order.

    - The control targets' pairs (at every vantage) go to the first group: every group needs
      them, and a group can borrow from the earlier groups only.
    - Each other target goes whole to one of the two groups, or is split: its pairs at the
      control vantages to the first group (which lends them), its pairs at the censored
      vantages to the second. Whole, the target's controls stay in one world; split, the
      groups can share the work more evenly.
    - Of all these ways, the one chosen leaves the least work to the busier group. The work is
      `_cost` per pair, with `1 + EXTRA` for a pair at a censored vantage. The extra probes of
      a split target's control-vantage pairs count in the second group, which makes them.
      Ties go to fewer splits. Up to `SEARCHED` targets every way is weighed; beyond that they
      are dealt greedily.

    >>> from probe.lab import load_scenario
    >>> for g in groups_of(load_scenario("kazakhstan-2019"), Simulation(days=1, vantages=("kz-almaty",))):
    ...     print(g.index, sorted(g.pairs))  # doctest: +NORMALIZE_WHITESPACE
    0 [('control', 'facebook'), ('control', 'facebook-cdn'), ('control', 'instagram'),
       ('control', 'news'), ('control', 'wikipedia'), ('control', 'youtube'),
       ('kz-almaty', 'wikipedia')]
    1 [('kz-almaty', 'facebook'), ('kz-almaty', 'facebook-cdn'), ('kz-almaty', 'instagram'),
       ('kz-almaty', 'news'), ('kz-almaty', 'youtube')]
    """
    vantages = [v for v in scenario.vantages if sim.vantages is None or v.control or v.name in sim.vantages]
    probed = [
        t for t in scenario.targets if t.probe and (sim.targets is None or t.control or t.name in sim.targets)
    ]
    first = [(v.name, t.name) for t in probed if t.control for v in vantages]
    base = (sum(_cost(t) for t in probed if t.control) * len(vantages), 0.0)
    ways = [_ways_of(t, vantages) for t in probed if not t.control]
    chosen = _best(ways, base) if len(ways) <= SEARCHED else _greedy(ways, base)
    second: list[Pair] = []
    for way in chosen:
        first += way.first
        second += way.second
    everywhere = ((v.name, t.name) for t in scenario.targets for v in vantages)
    order = {pair: i for i, pair in enumerate(everywhere)}
    parts = [sorted(part, key=order.__getitem__) for part in (first, second) if part]
    return [Group(i, tuple(part)) for i, part in enumerate(parts)]


def _ways_of(target: TargetSpec, vantages: Sequence[VantageSpec]) -> list[_Way]:
    cost = _cost(target)
    controls = tuple((v.name, target.name) for v in vantages if v.control)
    censored = tuple((v.name, target.name) for v in vantages if not v.control)
    # The control vantage's extra probes are made where the censored pairs run.
    extra = cost * EXTRA * len(controls) if censored else 0.0
    at_controls, at_censored = cost * len(controls), cost * (1 + EXTRA) * len(censored) + extra
    whole = at_controls + at_censored
    ways = [
        _Way(controls + censored, (), (whole, 0.0)),
        _Way((), controls + censored, (0.0, whole)),
    ]
    if controls and censored:
        ways.append(_Way(controls, censored, (at_controls, at_censored)))
    return ways


def _best(ways: Sequence[Sequence[_Way]], base: tuple[float, float]) -> tuple[_Way, ...]:
    """Every combination of ways weighed: the least work in the busier group, then the fewest
    splits, then the first in order."""

    def key(combination: tuple[_Way, ...]) -> tuple[float, int]:
        first = base[0] + sum(w.load[0] for w in combination)
        second = base[1] + sum(w.load[1] for w in combination)
        return round(max(first, second), 6), sum(w.split for w in combination)

    return min(itertools.product(*ways), key=key)


def _greedy(ways: Sequence[Sequence[_Way]], base: tuple[float, float]) -> list[_Way]:
    """The heaviest target first, each the way that leaves the busier group least loaded."""
    load = list(base)
    chosen: dict[int, _Way] = {}
    heaviest = sorted(range(len(ways)), key=lambda i: -sum(ways[i][0].load))
    for i in heaviest:
        way = min(ways[i], key=lambda w: (round(max(load[0] + w.load[0], load[1] + w.load[1]), 6), w.split))
        chosen[i] = way
        load = [load[0] + way.load[0], load[1] + way.load[1]]
    return [chosen[i] for i in range(len(ways))]


def _cost(target: TargetSpec) -> int:
    """A rough weight of one measurement of `target`, for splitting the pairs: a TLS
    handshake is most of a measurement's CPU, and a bulk download opens a second connection.

    >>> from probe.lab.scenario import TargetSpec
    >>> _cost(TargetSpec(name="a", hosts=["a.lab"], address="127.0.1.1"))
    6
    >>> _cost(TargetSpec(name="b", hosts=["b.lab"], address="127.0.1.2", scheme="http", bulk=False))
    1
    """
    https = target.scheme == "https"
    return 1 + 2 * https + (1 + 2 * https if target.bulk else 0)


def _controls_first(config: Config, pairs: Iterable[Pair]) -> list[Pair]:
    """Pairs that are controls for others start first, so the other runs of the instant share
    them instead of measuring them a second time: control targets (the control vantage's
    runs need them too), then the control vantages' pairs, then the rest."""
    control_vantages = {v.name for v in config.vantages if v.control}
    control_targets = {t.name for t in config.targets if t.control}
    return sorted(pairs, key=lambda p: (p[1] not in control_targets, p[0] not in control_vantages))


async def simulate(
    scenario: Scenario,
    sim: Simulation,
    database_url: str,
    state_dir: Path,
    *,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    migrate: bool = True,
    groups: Sequence[Group] | None = None,
) -> Summary:
    """Run the simulation and write its measurements to `database_url`.

    Every group (`groups_of`, or the `groups` given) is simulated in turn, each with its own
    lab. `state_dir` holds the labs' certificates and the store's spool. Setting `stop` ends
    the run after the current instant; what was measured is written. Raises `ValueError`
    for an unknown vantage/target filter, `StoreError` for a bad database URL. `migrate`
    False: the schema is already at head (a parallel run migrates once, before its workers
    start).
    """
    sim.check(scenario)
    every = groups_of(scenario, sim)
    chosen = list(groups) if groups is not None else every
    lending_dir = Path(state_dir) / "lending"
    if groups is None:
        lending.clear(lending_dir)
    start = (sim.start or natural_start(scenario)).astimezone(dt.UTC)
    stop = stop or asyncio.Event()
    summaries: list[Summary] = []
    began = time.monotonic()
    try:
        for n, group in enumerate(chosen):
            if stop.is_set():
                break

            def progress(p: Progress, done: int = n) -> None:
                if on_progress is not None:
                    fraction = (done + p.fraction) / len(chosen)
                    measured = sum(s.measurements for s in summaries) + p.measurements
                    on_progress(Progress(fraction, p.now, measured, time.monotonic() - began))

            share = _Share.of(scenario, every, group, lending_dir, stop)
            summaries.append(
                await _simulate_group(
                    scenario, sim, share, start, database_url, state_dir, stop, progress, migrate and n == 0
                )
            )
    finally:
        if groups is None:
            lending.remove(lending_dir)
    total = merge(summaries, time.monotonic() - began, start, start + dt.timedelta(days=sim.days))
    if len(summaries) < len(chosen):  # stopped before a group started: its pairs reached nothing
        total.reached = start
    return total


def merge(summaries: Sequence[Summary], elapsed: float, start: dt.datetime, end: dt.datetime) -> Summary:
    """One summary for several groups (or shards of groups)."""
    total = Summary(start=start, end=end, reached=end)
    for s in summaries:
        total.measurements += s.measurements
        total.runs += s.runs
        total.confirmations += s.confirmations
        total.watches += s.watches
        total.verdicts.update(s.verdicts)
        total.stopped |= s.stopped
        total.reached = min(total.reached, s.reached)
    if not summaries:
        total.reached = start
    total.elapsed = elapsed
    return total


@dataclass
class _World:
    """What a group's probing needs from the network it runs on."""

    config: Config
    measure_pair: Callable[[str, str], Awaitable[Measurement]]
    set_time: Callable[[dt.datetime], None]
    """Evaluate the censor's rules at this instant from now on."""
    deliver: Callable[[list[Result]], None]
    """Store these results (the group's share of them)."""
    report: Callable[[Progress], None]


@dataclass
class _Share:
    """What a group owns, and how it trades controls with the other groups (`probe.lab.lending`)."""

    group: Group
    owners: dict[Pair, int]
    lent: frozenset[Pair]
    """The pairs later groups may borrow from this one."""
    ledger: lending.Ledger
    loans: lending.Loans

    @classmethod
    def of(
        cls, scenario: Scenario, every: Sequence[Group], group: Group, directory: Path, stop: asyncio.Event
    ) -> _Share:
        owners = {pair: g.index for g in every for pair in g.pairs}
        control_vantages = [v.name for v in scenario.vantages if v.control]
        control_targets = [t.name for t in scenario.targets if t.control]
        later = (pair for g in every if g.index > group.index for pair in g.pairs)
        lent = frozenset(c for pair in later for c in controls_of(pair, control_vantages, control_targets))
        ledger = lending.Ledger(lending.ledger_path(directory, group.index))
        earlier = [lending.ledger_path(directory, g.index) for g in every if g.index < group.index]
        loans = lending.Loans(earlier, stopped=stop.is_set)  # read from the world's thread: a flag
        return cls(group, owners, lent, ledger, loans)

    def stores(self, pair: Pair) -> bool:
        """Its own pairs, and fresh controls an earlier group owns (none was lent for them)."""
        return self.owners.get(pair, self.group.index) <= self.group.index

    def borrower(self, clock: Any, max_age: Callable[[], float]) -> Callable[[str, str], Measurement | None]:
        def borrow(vantage: str, target: str) -> Measurement | None:
            if self.owners.get((vantage, target), self.group.index) >= self.group.index:
                return None
            return self.loans.fresh(vantage, target, clock.monotonic(), max_age())

        return borrow

    def close(self) -> None:
        self.ledger.close()
        self.loans.close()


async def _simulate_group(
    scenario: Scenario,
    sim: Simulation,
    share: _Share,
    start: dt.datetime,
    database_url: str,
    state_dir: Path,
    stop: asyncio.Event,
    on_progress: Callable[[Progress], None],
    migrate: bool,
) -> Summary:
    summary = Summary(start=start, end=start + dt.timedelta(days=sim.days), reached=start)
    group_dir = Path(state_dir) / f"group{share.group.index}"
    seed = None if sim.seed is None else sim.seed + share.group.index
    began = time.monotonic()
    try:
        store = await Store.open(database_url, group_dir / "spool", migrate=migrate)
        try:
            if sim.network == "memory":
                await _in_memory(
                    scenario, sim, share, start, store, group_dir, seed, stop, on_progress, summary
                )
            else:
                await _over_kernel(
                    scenario, sim, share, start, store, group_dir, seed, stop, on_progress, summary
                )
        finally:
            summary.stopped = stop.is_set()
            await store.close()
            summary.elapsed = time.monotonic() - began
    finally:
        share.close()  # done, stopped or failed: the later groups wait for it no more
    return summary


async def _over_kernel(
    scenario: Scenario,
    sim: Simulation,
    share: _Share,
    start: dt.datetime,
    store: Store,
    group_dir: Path,
    seed: int | None,
    stop: asyncio.Event,
    on_progress: Callable[[Progress], None],
    summary: Summary,
) -> None:
    """The real-socket lab on loopback; step durations are real."""
    clock = VirtualClock(start)
    probe_clock = ProbeClock(clock)
    async with Lab(prepare(scenario, sim), group_dir / "lab", loss=sim.loss, seed=seed) as lab:
        config = simulation_config(lab.curfew_config(), sim)
        await store.sync_inventory(config)
        networks = {v.name: vantage_network(v, config) for v in config.vantages}

        async def measure_pair(vantage: str, target: str) -> Measurement:
            return await measure(config.target(target), networks[vantage], config.probe, probe_clock)

        def set_time(when: dt.datetime) -> None:
            clock.current = when
            lab.set_time(when)

        def deliver(results: list[Result]) -> None:
            for result in results:
                store.submit(result)

        world = _World(config, measure_pair, set_time, deliver, on_progress)
        await _probe(world, _prober(config, clock, measure_pair, share), sim, share, start, stop, summary)


async def _in_memory(
    scenario: Scenario,
    sim: Simulation,
    share: _Share,
    start: dt.datetime,
    store: Store,
    group_dir: Path,
    seed: int | None,
    stop: asyncio.Event,
    on_progress: Callable[[Progress], None],
    summary: Summary,
) -> None:
    """`probe.lab.memnet` on a virtual-time loop in a thread of its own; the store stays on
    this (real-time) loop, which gets each instant's results in one batch."""
    here = asyncio.get_running_loop()
    instant = [start]
    network = MemoryNetwork(
        prepare_memory(scenario, sim), group_dir / "lab", lambda: instant[0], sim.loss, seed
    )
    config = simulation_config(network.curfew_config(), sim)
    await store.sync_inventory(config)

    def submit(results: list[Result]) -> None:
        for result in results:
            store.submit(result)

    def world_thread() -> None:
        loop = VirtualLoop(start.timestamp())
        try:
            loop.run_until_complete(world_main(loop))
        finally:
            loop.close()

    async def world_main(loop: VirtualLoop) -> None:
        clock = LoopClock(loop)
        networks = {v.name: vantage_network(v, config, network.socket) for v in config.vantages}

        async def measure_pair(vantage: str, target: str) -> Measurement:
            return await measure(config.target(target), networks[vantage], config.probe, clock)

        def set_time(when: dt.datetime) -> None:
            instant[0] = when

        def deliver(results: list[Result]) -> None:
            here.call_soon_threadsafe(submit, results)

        def report(p: Progress) -> None:
            here.call_soon_threadsafe(on_progress, p)

        world = _World(config, measure_pair, set_time, deliver, report)
        try:
            await _probe(world, _prober(config, clock, measure_pair, share), sim, share, start, stop, summary)
        finally:
            await network.close()

    await here.run_in_executor(None, world_thread)


def _prober(
    config: Config, clock: Any, measure_pair: Callable[[str, str], Awaitable[Measurement]], share: _Share
) -> Prober:
    """The daemon's Prober on the group's world, borrowing the controls earlier groups lend."""
    borrow = share.borrower(clock, lambda: prober.control_max_age)
    prober = Prober(config, clock, measure_fn=measure_pair, borrow=borrow)
    return prober


async def _probe(
    world: _World,
    prober: Prober,
    sim: Simulation,
    share: _Share,
    start: dt.datetime,
    stop: asyncio.Event,
    summary: Summary,
) -> None:
    """The group's days: the agenda's instants in order, each one's due pairs run together."""
    config = world.config
    end = start + dt.timedelta(days=sim.days)
    owned = set(share.group.pairs)
    scheduled = {pair: interval for pair, interval in intervals_of(config).items() if pair in owned}
    agenda = Agenda(
        scheduled,
        confirm_interval=sim.confirm_interval,
        confirm_count=sim.confirm_count,
        anchor=start.timestamp(),
        spread=sim.spread,
        watch_margin=sim.watch_margin,
    )
    monitor = _monitor(config, sim) if sim.watch else None
    next_plan = start.timestamp()
    deadline = config.probe.timeouts.total * 2 + RUN_MARGIN
    loop = asyncio.get_running_loop()
    began = time.monotonic()
    due = agenda.next(start.timestamp(), inclusive=True)
    while not stop.is_set() and due.when < end.timestamp():
        if monitor is not None and due.when >= next_plan:
            # Plan the next day before anything of it runs, from what is known now.
            schedules = monitor.snapshot(dt.datetime.fromtimestamp(next_plan, dt.UTC)).schedules
            agenda.plan_watch(schedules, next_plan, next_plan + PLAN_EVERY)
            agenda.forget_before(next_plan)
            next_plan += PLAN_EVERY
            due = agenda.next(due.when, inclusive=True)
            continue
        if (wait := due.when - loop.time()) > 0 and isinstance(loop, VirtualLoop):
            await asyncio.sleep(wait)  # virtual: the loop's clock jumps to the instant
        now = dt.datetime.fromtimestamp(due.when, dt.UTC)
        world.set_time(now)
        share.loans.ready(due.when)  # before the runs: what the earlier groups lend for this instant
        pairs = _controls_first(config, due.pairs)
        runs = await asyncio.gather(
            *(asyncio.wait_for(prober.run(*pair), deadline) for pair in pairs), return_exceptions=True
        )
        batch: list[Result] = []
        for pair, results in zip(pairs, runs, strict=True):
            if isinstance(results, BaseException):
                if isinstance(results, TimeoutError):
                    continue  # abandoned like the daemon's; the pair fires again later
                raise results
            kept = [r for r in results if share.stores(_pair(r))]
            batch += kept
            _count(kept, summary)
            if monitor is not None:
                for result in results:
                    monitor.observe(result)
            own = own_result(pair, results)
            if own is not None:  # else its probe failed on this machine: no verdict
                agenda.record(pair, own.analysis.verdict, due.when)
        world.deliver(batch)
        summary.runs += len(pairs)
        summary.confirmations += due.confirmations
        summary.watches += due.watch_only
        summary.reached = now
        summary.elapsed = time.monotonic() - began
        done = (now - start).total_seconds() / (end - start).total_seconds()
        world.report(Progress(done, now, summary.measurements, summary.elapsed))
        due = agenda.next(due.when)
        # Nothing of this group starts before its next instant any more (a plan made then only
        # adds instants from there on): what later groups may borrow is all written.
        share.ledger.lend((r.measurement for r in batch if _pair(r) in share.lent), until=due.when)
    if not stop.is_set():
        summary.reached = end


def _pair(result: Result) -> Pair:
    return result.measurement.vantage, result.measurement.target


def _monitor(config: Config, sim: Simulation) -> Monitor:
    """The daemon's blackout monitor, whose inferred schedules place the watch windows."""
    zones = {v.name: v.timezone for v in config.vantages}
    monitor = Monitor(
        zones,
        open_after=sim.confirm_count,
        close_after=sim.confirm_count,
        min_span=sim.confirm_interval * sim.confirm_count,
    )
    monitor.set_config(zones, intervals_of(config))
    return monitor


def _count(results: list[Result], summary: Summary) -> None:
    for result in results:
        summary.measurements += 1
        summary.verdicts[result.analysis.verdict] += 1
