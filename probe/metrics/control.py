"""The control-failure counter: helper exchanges that gave no control, rendered on every scrape.

Register it on the daemon's registry next to `Metrics`:

    registry.register(ControlFailureCollector(pool_failures.snapshot))

`curfew_control_failures_total{helper,reason}`: `helper` is the helper's host (a configured,
small set), `reason` one of `probe.helper.client.REASONS`; every pair of the two exists at 0
from start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from probe.metrics.families import CONTROL_FAILURES


class ControlFailureCollector(Collector):
    def __init__(self, source: Callable[[], dict[tuple[str, str], int]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield _family({})

    def collect(self) -> Iterator[Metric]:
        yield _family(self._source())


def _family(counts: dict[tuple[str, str], int]) -> Metric:
    family = CounterMetricFamily(CONTROL_FAILURES.name, CONTROL_FAILURES.help, labels=["helper", "reason"])
    for (helper, reason), value in sorted(counts.items()):
        family.add_metric([helper, reason], value)
    return family
