"""Probing one (vantage, target) for the daemon, with the controls it needs.

A verdict is only as good as its controls: the control targets at the same vantage and the
same target at a control vantage must be measured at (about) the same time. Rather than
probing them again for every target, a control measurement younger than `control_max_age`
is shared, and one in flight is awaited rather than duplicated.

A measurement that failed on this machine (`probe.analysis.local`: out of descriptors, memory,
local ports) is not a measurement of the network: it is counted (`on_local_failure`) and
logged, never judged, stored or used as a control (docs/verdicts.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from probe import failures
from probe.analysis.local import local_failure
from probe.analysis.verdict import connectivity_failure
from probe.clock import SYSTEM_CLOCK, Clock
from probe.config import Config
from probe.engine import measure
from probe.helper.answer import HelperAnswer
from probe.helper_pool import ControlFailures, HelperPool
from probe.model import DnsObservation, Measurement, Result
from probe.round import elsewhere, judge, reach
from probe.vantage import VantageNetwork, vantage_network

Measure = Callable[[str, str], Awaitable[Measurement]]
OnResolved = Callable[[DnsObservation | None], None]
LocalFailureHook = Callable[[str], None]
"""Called with the reason (`probe.failures.LOCAL_REASONS`) of each probe that failed locally."""
Borrow = Callable[[str, str], Measurement | None]
"""A fresh measurement of (vantage, target) made elsewhere, to use as a control instead of
measuring it again, or None (the lab's simulation: another group's, `probe.lab.lending`)."""

log = logging.getLogger("curfew.prober")


@dataclass
class _Fresh:
    at: float
    task: asyncio.Future[Measurement]


class Prober:
    """Measures pairs under a global concurrency limit; never two runs of one pair at once."""

    def __init__(
        self,
        config: Config,
        clock: Clock = SYSTEM_CLOCK,
        measure_fn: Measure | None = None,
        control_failures: ControlFailures | None = None,
        on_local_failure: LocalFailureHook | None = None,
        borrow: Borrow | None = None,
    ) -> None:
        self.clock = clock
        self._borrow = borrow
        self._on_local_failure = on_local_failure
        self.max_concurrency = 0
        self._recent: dict[tuple[str, str], _Fresh] = {}
        self._measure_fn = measure_fn
        self.control_failures = control_failures if control_failures is not None else ControlFailures()
        self.helpers: HelperPool | None = None
        self._retired: list[HelperPool] = []  # replaced by a reload, closed later (or at aclose)
        self.config = config
        self.swap(config)

    def swap(self, config: Config) -> None:
        """Use a new config from the next run on (in-flight runs finish with the old one).

        Raises `OSError` (`ssl.SSLError`) for a CA bundle OpenSSL refuses, which `load_config`
        does not ask it about; nothing is changed then.
        """
        # What can fail is built first, so a refused config leaves the running one whole.
        networks = {v.name: vantage_network(v, config) for v in config.vantages}
        helpers = HelperPool(config, self.control_failures)
        if self.helpers is not None:
            # Asks in flight keep the old clients until they are done (bounded by their deadline).
            self.helpers.close_later(self.config.probe.timeouts.helper + 1.0)
            self._retired = [p for p in self._retired if not p.closed]
            self._retired.append(self.helpers)
        self.helpers = helpers
        self.config = config
        if config.max_concurrency != self.max_concurrency:
            # Runs in flight keep the old gate; new ones queue at the new limit.
            self._gate = asyncio.Semaphore(config.max_concurrency)
            self.max_concurrency = config.max_concurrency
        self._networks: dict[str, VantageNetwork] = networks
        self._recent.clear()
        # Controls younger than this are shared: a fraction of the shortest interval, at most a minute.
        self.control_max_age = min(60.0, config.confirm_interval / 2, config.interval / 2)

    async def _measure(
        self,
        config: Config,
        networks: Mapping[str, VantageNetwork],
        vantage: str,
        target: str,
        on_resolved: OnResolved | None = None,
    ) -> Measurement:
        async with self._gate:
            if self._measure_fn is not None:
                return await self._measure_fn(vantage, target)
            # The run's config, not `self.config`: a reload while this waited at the gate may
            # have removed the target or the vantage.
            return await measure(
                config.target(target),
                networks[vantage],
                config.probe,
                self.clock,
                on_resolved=on_resolved,
            )

    def _start(
        self,
        config: Config,
        networks: Mapping[str, VantageNetwork],
        vantage: str,
        target: str,
        on_resolved: OnResolved | None = None,
    ) -> asyncio.Future[Measurement]:
        """Measure now and remember it for others who need the same pair as a control."""
        task = asyncio.ensure_future(self._measure(config, networks, vantage, target, on_resolved))
        self._recent[(vantage, target)] = _Fresh(self.clock.monotonic(), task)
        return task

    def _shared(
        self, config: Config, networks: Mapping[str, VantageNetwork], vantage: str, target: str
    ) -> tuple[asyncio.Future[Measurement], bool]:
        """A recent (or in-flight) measurement of the pair, else one lent by `borrow`, else a
        new one; True if new."""
        fresh = self._recent.get((vantage, target))
        age_ok = fresh is not None and self.clock.monotonic() - fresh.at <= self.control_max_age
        if fresh is not None and age_ok and not (fresh.task.done() and _unusable(fresh.task)):
            return fresh.task, False
        if self._borrow is not None and (lent := self._borrow(vantage, target)) is not None:
            done: asyncio.Future[Measurement] = asyncio.get_running_loop().create_future()
            done.set_result(lent)
            return done, False
        return self._start(config, networks, vantage, target), True

    async def _reach(
        self, config: Config, networks: Mapping[str, VantageNetwork], control: Measurement, mine: Measurement
    ) -> Measurement:
        """The control vantage's measurement of `mine`'s target, extended with what it saw on
        the addresses `mine` resolved and it did not (as a helper would); others as they are."""
        if self._measure_fn is not None or control.target != mine.target:
            return control
        if not config.vantage(control.vantage).control:
            return control
        missing = elsewhere(control, [mine])
        if not missing:
            return control
        async with self._gate:
            extended = await reach(config, networks[control.vantage], control, missing, self.clock)
        # Short of descriptors while reaching: keep the control as it was measured, with no
        # hole this machine made (it is stored, and judged, as a measurement of the network).
        return control if local_failure(extended) is not None else extended

    async def aclose(self) -> None:
        # The pools a reload replaced too: their delayed close would otherwise be cancelled
        # with the event loop, their clients never closed.
        for pool in [*self._retired, self.helpers]:
            if pool is not None:
                await pool.aclose()
        self._retired.clear()

    async def run(self, vantage: str, target: str) -> list[Result]:
        """Probe the pair (and whatever controls are stale) and judge it in one round.

        Returns the results of every measurement made fresh for this run, the pair's first:
        each is a real measurement and is stored and counted. If the pair's own probe failed
        on this machine, there is no result for the pair: the list holds only the fresh
        controls that did measure the network (possibly none).
        """
        config, networks = self.config, self._networks  # kept for the whole run (see swap)
        early: list[asyncio.Future[HelperAnswer | None]] = []

        def resolved(dns: DnsObservation | None) -> None:
            # The helper is asked as soon as the vantage's own addresses are known, while the
            # probe connects, fetches and downloads. The pool current now, not at the run's
            # start: a pool replaced by a reload is closed soon after (`swap`), and a closed
            # pool is asked nothing.
            helpers = self.helpers
            if helpers is not None and helpers.wanted_for(vantage, target) and not early:
                url = config.target(target).url
                early.append(asyncio.ensure_future(helpers.ask_for(vantage, target, url, dns)))

        own = self._start(config, networks, vantage, target, resolved)
        asking: asyncio.Future[HelperAnswer | None] | None = None
        try:
            needed = controls_of(
                (vantage, target),
                [v.name for v in config.vantages if v.control],
                [t.name for t in config.targets if t.control],
            )
            shared = [self._shared(config, networks, v, t) for v, t in needed]
            mine = await own
            usable = local_failure(mine) is None
            if usable and config.vantage(vantage).control and connectivity_failure(mine)[0] is not None:
                # The control vantage failed: only the other vantages can tell an outage (they
                # fail the same way) from a problem of its own, so they are measured now (or shared).
                peers = [(v.name, target) for v in config.vantages if not v.control]
                needed += peers
                shared += [self._shared(config, networks, v, t) for v, t in peers]
            if usable and early:
                asking = early[0]
            elif usable and (helpers := self.helpers) is not None and helpers.wanted(mine):
                # No early question (a measurement function without the hook, as in the lab's
                # simulation): ask right after the probe.
                asking = asyncio.ensure_future(helpers.ask(mine))
            return await self._judge(config, networks, vantage, target, mine, needed, shared, asking)
        finally:
            for question in [*early, asking]:
                if question is not None and not question.done():
                    question.cancel()  # the run was cancelled (drain), or the probe was unusable

    async def _judge(
        self,
        config: Config,
        networks: Mapping[str, VantageNetwork],
        vantage: str,
        target: str,
        mine: Measurement,
        needed: list[tuple[str, str]],
        shared: list[tuple[asyncio.Future[Measurement], bool]],
        asking: asyncio.Future[HelperAnswer | None] | None,
    ) -> list[Result]:
        """The rest of `run`, once the pair's own measurement is in: wait for the controls (and
        the helper), reach the vantage's addresses from the control vantage, judge."""
        # A borrowed control is another run's probe (its own, or one it started): cancelling this
        # run (its deadline, a drain) must not cancel it under that run.
        waits = (task if new else asyncio.shield(task) for task, new in shared)
        controls = await asyncio.gather(*waits, return_exceptions=True)
        fresh_keys = {(v, t) for (v, t), (_, new) in zip(needed, shared, strict=True) if new}
        measurements = []
        for m in [mine] + [m for m in controls if isinstance(m, Measurement)]:
            if local_failure(m) is None:
                measurements.append(m)
            elif m is mine or (m.vantage, m.target) in fresh_keys:  # counted once, by its maker
                self._local(m)
        pair_measured = bool(measurements) and measurements[0] is mine
        reached: set[str] = set()
        if pair_measured and not config.vantage(vantage).control:
            others = measurements[1:]
            extended = await asyncio.gather(*(self._reach(config, networks, m, mine) for m in others))
            reached = {e.vantage for e, m in zip(extended, measurements[1:], strict=True) if e is not m}
            measurements = [mine, *extended]
        answers = {}
        if asking is not None:
            answer = await asking
            if answer is not None and pair_measured:
                answers[(vantage, target)] = answer
        results = judge(config, measurements, helper_answers=answers)
        if pair_measured:
            results[0] = _inline_if_unstored(results[0], measurements, reached, fresh_keys)
        fresh = [r for r in results if (r.measurement.vantage, r.measurement.target) in fresh_keys]
        return [results[0], *fresh] if pair_measured else fresh

    def _local(self, m: Measurement) -> None:
        found = local_failure(m)
        assert found is not None
        operation, failure = found
        reason = failures.local_reason(failure)
        log.warning(
            "event=local-failure vantage=%s target=%s operation=%s reason=%s stored=no",
            m.vantage,
            m.target,
            operation,
            reason,
        )
        if self._on_local_failure is not None:
            self._on_local_failure(reason)


def controls_of(
    pair: tuple[str, str], control_vantages: Iterable[str], control_targets: Iterable[str]
) -> list[tuple[str, str]]:
    """The controls a run of `pair` needs, in order: the control targets at its vantage, then
    its target at the control vantages.

    >>> controls_of(("kz", "fb"), ["de"], ["wiki"])
    [('kz', 'wiki'), ('de', 'fb')]
    >>> controls_of(("de", "wiki"), ["de"], ["wiki"])
    []
    """
    vantage, target = pair
    needed = [(vantage, t) for t in control_targets if t != target]
    return needed + [(v, target) for v in control_vantages if v != vantage]


def own_result(pair: tuple[str, str], results: list[Result]) -> Result | None:
    """The result of `pair` itself among what `Prober.run(*pair)` returned; None when the pair's
    own probe failed on this machine (so there is no verdict to confirm)."""
    if results and (results[0].measurement.vantage, results[0].measurement.target) == pair:
        return results[0]
    return None


def _unusable(task: asyncio.Future[Measurement]) -> bool:
    """A finished control that cannot vouch for anything: it raised, or failed on this machine."""
    if task.cancelled() or task.exception() is not None:
        return True
    return local_failure(task.result()) is not None


def _inline_if_unstored(
    result: Result, measurements: list[Measurement], reached: set[str], fresh: set[tuple[str, str]]
) -> Result:
    """`result` with its control vantage's measurement kept inline when no stored row holds
    what it was judged with: a shared (already stored) control that reached this vantage's
    addresses afterwards. A fresh control is stored as judged, and names itself by uid."""
    record = result.control
    if record is None or record.source is None or not record.source.startswith("vantage:"):
        return result
    name = record.source.removeprefix("vantage:")
    if name not in reached or (name, result.measurement.target) in fresh:
        return result
    used = next(m for m in measurements if m.vantage == name and m.target == result.measurement.target)
    return replace(result, control=replace(record, measurement=used))
