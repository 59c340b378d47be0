"""Probing one (vantage, target) for the daemon, with the controls it needs.

A verdict is only as good as its controls: the control targets at the same vantage and the
same target at a control vantage must be measured at (about) the same time. Rather than
probing them again for every target, a control measurement younger than `control_max_age`
is shared, and one in flight is awaited rather than duplicated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from probe.clock import SYSTEM_CLOCK, Clock
from probe.config import Config
from probe.engine import measure
from probe.model import Measurement, Result
from probe.round import judge
from probe.vantage import VantageNetwork, vantage_network

Measure = Callable[[str, str], Awaitable[Measurement]]


@dataclass
class _Fresh:
    at: float
    task: asyncio.Future[Measurement]


class Prober:
    """Measures pairs under a global concurrency limit; never two runs of one pair at once."""

    def __init__(
        self, config: Config, clock: Clock = SYSTEM_CLOCK, measure_fn: Measure | None = None
    ) -> None:
        self.clock = clock
        self.max_concurrency = 0
        self._recent: dict[tuple[str, str], _Fresh] = {}
        self._measure_fn = measure_fn
        self.swap(config)

    def swap(self, config: Config) -> None:
        """Use a new config from the next run on (in-flight runs finish with the old one)."""
        self.config = config
        if config.max_concurrency != self.max_concurrency:
            # Runs in flight keep the old gate; new ones queue at the new limit.
            self._gate = asyncio.Semaphore(config.max_concurrency)
            self.max_concurrency = config.max_concurrency
        self._networks: dict[str, VantageNetwork] = {
            v.name: vantage_network(v, config) for v in config.vantages
        }
        self._recent.clear()
        # Controls younger than this are shared: a fraction of the shortest interval, at most a minute.
        self.control_max_age = min(60.0, config.confirm_interval / 2, config.interval / 2)

    async def _measure(self, vantage: str, target: str) -> Measurement:
        async with self._gate:
            if self._measure_fn is not None:
                return await self._measure_fn(vantage, target)
            return await measure(
                self.config.target(target), self._networks[vantage], self.config.probe, self.clock
            )

    def _start(self, vantage: str, target: str) -> asyncio.Future[Measurement]:
        """Measure now and remember it for others who need the same pair as a control."""
        task = asyncio.ensure_future(self._measure(vantage, target))
        self._recent[(vantage, target)] = _Fresh(self.clock.monotonic(), task)
        return task

    def _shared(self, vantage: str, target: str) -> tuple[asyncio.Future[Measurement], bool]:
        """A recent (or in-flight) measurement of the pair, else a new one; True if new."""
        fresh = self._recent.get((vantage, target))
        age_ok = fresh is not None and self.clock.monotonic() - fresh.at <= self.control_max_age
        if fresh is not None and age_ok and not (fresh.task.done() and fresh.task.exception()):
            return fresh.task, False
        return self._start(vantage, target), True

    async def run(self, vantage: str, target: str) -> list[Result]:
        """Probe the pair (and whatever controls are stale) and judge it in one round.

        Returns the results of every measurement made fresh for this run, the pair's first:
        each is a real measurement and is stored and counted.
        """
        config = self.config
        own = self._start(vantage, target)
        needed: list[tuple[str, str]] = []
        needed += [(vantage, t.name) for t in config.targets if t.control and t.name != target]
        needed += [(v.name, target) for v in config.vantages if v.control and v.name != vantage]
        shared = [self._shared(v, t) for v, t in needed]
        mine = await own
        controls = await asyncio.gather(*(task for task, _ in shared), return_exceptions=True)
        measurements = [mine] + [m for m in controls if isinstance(m, Measurement)]
        results = judge(config, measurements)
        fresh_keys = {(v, t) for (v, t), (_, new) in zip(needed, shared, strict=True) if new}
        fresh = [r for r in results[1:] if (r.measurement.vantage, r.measurement.target) in fresh_keys]
        return [results[0], *fresh]
