"""Blackout metrics: a collector that renders a `BlackoutSnapshot` on every scrape.

Register it on the daemon's registry next to `Metrics`:

    registry.register(BlackoutCollector(lambda: monitor.snapshot(datetime.now(UTC))))

Series (labels from small fixed sets; `hour` is the vantage-local hour 0-23):
- curfew_blackout_active{vantage,target}: 1 while a target's episode is open, else 0 (every
  configured pair); curfew_blackout_started_timestamp_seconds{vantage,target} while it is;
- curfew_blackouts_total{vantage,target,verdict}: episodes opened since start-up, at 0 for each
  blocking verdict of every configured pair, so `increase()` sees the first one;
- curfew_hourly_reachability_ratio{vantage,target,hour}: share of conclusive probes that
  reached the target in that local hour over the rolling window (hours with data only);
- curfew_recurring_blackout_info{vantage,target,window,days,verdict}: 1 while a schedule is
  inferred (window "20:00-22:10", days "12/14" or "mon-fri");
- the vantage-shutdown equivalents: curfew_vantage_shutdown_active{vantage},
  curfew_vantage_shutdown_started_timestamp_seconds{vantage}, curfew_vantage_shutdowns_total{vantage},
  curfew_recurring_vantage_shutdown_info{vantage,window,days}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from probe.episodes.model import BLOCKED_VERDICTS
from probe.episodes.monitor import BlackoutSnapshot

_VERDICTS = tuple(sorted(BLOCKED_VERDICTS))


class BlackoutCollector(Collector):
    """Fresh families from `source()` on each scrape: a pair dropped from the config loses its
    series on the next one."""

    def __init__(self, source: Callable[[], BlackoutSnapshot]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        # Names only, so the registry refuses a clash; describing never calls source().
        yield from _families(BlackoutSnapshot())

    def collect(self) -> Iterator[Metric]:
        yield from _families(self._source())


def _families(s: BlackoutSnapshot) -> Iterator[Metric]:
    active = GaugeMetricFamily(
        "curfew_blackout_active",
        "1 while a blackout of the target at the vantage is under way.",
        labels=["vantage", "target"],
    )
    started = GaugeMetricFamily(
        "curfew_blackout_started_timestamp_seconds",
        "Estimated onset of the blackout under way (midpoint of the last good and first bad probe).",
        labels=["vantage", "target"],
    )
    totals = CounterMetricFamily(
        "curfew_blackouts",
        "Blackout episodes of the target opened, by dominant verdict.",
        labels=["vantage", "target", "verdict"],
    )
    hourly = GaugeMetricFamily(
        "curfew_hourly_reachability_ratio",
        "Share of conclusive probes that reached the target, by vantage-local hour, over the window.",
        labels=["vantage", "target", "hour"],
    )
    recurring = InfoMetricFamily(
        "curfew_recurring_blackout",
        "A recurring blackout schedule inferred over the window.",
        labels=["vantage", "target"],  # + window, days, verdict
    )
    down = GaugeMetricFamily(
        "curfew_vantage_shutdown_active", "1 while the vantage itself is cut off.", labels=["vantage"]
    )
    down_started = GaugeMetricFamily(
        "curfew_vantage_shutdown_started_timestamp_seconds",
        "Estimated onset of the vantage shutdown under way.",
        labels=["vantage"],
    )
    shutdowns = CounterMetricFamily(
        "curfew_vantage_shutdowns", "Vantage-shutdown episodes opened.", labels=["vantage"]
    )
    recurring_down = InfoMetricFamily(
        "curfew_recurring_vantage_shutdown",
        "A recurring vantage shutdown inferred over the window.",
        labels=["vantage"],  # + window, days
    )

    open_targets = {(e.vantage, e.target): e for e in s.active if e.target is not None}
    open_vantages = {e.vantage: e for e in s.active if e.target is None}
    for vantage, target in dict.fromkeys([*s.pairs, *open_targets]):
        episode = open_targets.get((vantage, target))
        active.add_metric([vantage, target], 1.0 if episode else 0.0)
        if episode is not None:
            started.add_metric([vantage, target], episode.started_at.timestamp())
    counted = dict.fromkeys(((v, t, verdict) for v, t in s.pairs for verdict in _VERDICTS), 0)
    counted.update(s.totals)
    for (vantage, target, verdict), n in counted.items():
        totals.add_metric([vantage, target, verdict], float(n))
    for vantage in dict.fromkeys([*s.vantages, *open_vantages, *s.shutdowns]):
        episode = open_vantages.get(vantage)
        down.add_metric([vantage], 1.0 if episode else 0.0)
        if episode is not None:
            down_started.add_metric([vantage], episode.started_at.timestamp())
        shutdowns.add_metric([vantage], float(s.shutdowns.get(vantage, 0)))
    for (vantage, target), hours in s.hourly.items():
        for hour, ratio in hours.items():
            hourly.add_metric([vantage, target, str(hour)], ratio)
    for schedule in s.schedules:
        if schedule.target is None:
            recurring_down.add_metric([schedule.vantage], {"window": schedule.window, "days": schedule.days})
        else:
            recurring.add_metric(
                [schedule.vantage, schedule.target],
                {"window": schedule.window, "days": schedule.days, "verdict": schedule.verdict},
            )
    yield from (active, started, totals, hourly, recurring, down, down_started, shutdowns, recurring_down)
