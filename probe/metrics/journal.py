"""The journal's health: a collector that reads the store's counters on every scrape.

Register it on the daemon's registry next to `Metrics` (like `BlackoutCollector`):

    registry.register(JournalCollector(store))

Series: curfew_journal_write_errors_total, curfew_unjournaled_measurements and
curfew_journal_skipped_lines_total (families.py). Reading them is three attribute reads: a
scrape never waits on the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from probe.metrics.families import JOURNAL_SKIPPED, JOURNAL_WRITE_ERRORS, UNJOURNALED


class JournalSource(Protocol):
    """What `probe.store.Store` offers (the metrics do not import the store)."""

    @property
    def journal_errors(self) -> int: ...
    @property
    def unjournaled(self) -> int: ...
    @property
    def journal_skipped(self) -> int: ...


class JournalCollector(Collector):
    def __init__(self, source: JournalSource | None) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield from self._families(0, 0, 0)

    def collect(self) -> Iterator[Metric]:
        s = self._source
        if s is not None:
            yield from self._families(s.journal_errors, s.unjournaled, s.journal_skipped)

    @staticmethod
    def _families(errors: int, unjournaled: int, skipped: int) -> Iterator[Metric]:
        yield CounterMetricFamily(JOURNAL_WRITE_ERRORS.name, JOURNAL_WRITE_ERRORS.help, value=errors)
        yield GaugeMetricFamily(UNJOURNALED.name, UNJOURNALED.help, value=unjournaled)
        yield CounterMetricFamily(JOURNAL_SKIPPED.name, JOURNAL_SKIPPED.help, value=skipped)
