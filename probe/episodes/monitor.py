"""`Monitor`: the daemon's live view of blackouts, for the metrics.

It feeds each result to a `Tracker`, counts hour-of-day reachability over the rolling window
and keeps the window's episodes, and hands out an immutable `BlackoutSnapshot` (active
episodes, totals, hourly ratios, inferred schedules) that a scrape renders without waiting
on anything. Pure like the rest of the package: time comes in as arguments.

    monitor = Monitor({"kz-almaty": "Asia/Almaty"}, open_after=config.confirm_count)
    events = monitor.observe(result)        # journal them: store.submit_episodes(events)
    snapshot = monitor.snapshot(now)         # from the metrics collector, any thread
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from probe.episodes.detect import DEFAULT_CLOSE_AFTER, DEFAULT_OPEN_AFTER, Tracker
from probe.episodes.model import Episode, EpisodeEvent, Observation
from probe.episodes.pattern import DEFAULT_WINDOW_DAYS, HourlyCounts, Schedule, infer_pattern, window_start
from probe.failures import is_local

if TYPE_CHECKING:
    from probe.model import Result

Pair = tuple[str, str]
EpisodeKey = tuple[str, str | None, datetime]


@dataclass(frozen=True)
class BlackoutSnapshot:
    """What the blackout metrics show at one moment."""

    pairs: tuple[Pair, ...] = ()
    vantages: tuple[str, ...] = ()
    active: tuple[Episode, ...] = ()
    totals: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """Target episodes opened since start-up, by (vantage, target, verdict)."""
    shutdowns: Mapping[str, int] = field(default_factory=dict)
    """Vantage-shutdown episodes opened since start-up, by vantage."""
    hourly: Mapping[Pair, Mapping[int, float]] = field(default_factory=dict)
    """Reachability ratio by local hour, for the hours with data."""
    schedules: tuple[Schedule, ...] = ()


class Monitor:
    """Tracker + hourly counts + the window's episodes, behind one lock."""

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        open_after: int = DEFAULT_OPEN_AFTER,
        close_after: int = DEFAULT_CLOSE_AFTER,
        days: int = DEFAULT_WINDOW_DAYS,
        min_span: float = 0.0,
    ) -> None:
        self.days = days
        self._lock = threading.Lock()
        self._tracker = Tracker(open_after, close_after, min_span)
        self._zones = {v: ZoneInfo(z) for v, z in zones.items()}
        self._pairs: tuple[Pair, ...] = ()
        self._hourly = HourlyCounts()
        self._episodes: dict[EpisodeKey, Episode] = {}
        self._totals: Counter[tuple[str, str, str]] = Counter()
        self._shutdowns: Counter[str] = Counter()
        self._version = 0  # bumped when an episode closes: the schedules may change
        self._schedules: tuple[tuple[int, str], tuple[Schedule, ...]] | None = None

    def set_config(self, zones: Mapping[str, str], pairs: Iterable[Pair]) -> None:
        """The vantages' zones and the configured (vantage, target) pairs, which get their zero
        series; on start-up and on each reload."""
        with self._lock:
            self._zones = {v: ZoneInfo(z) for v, z in zones.items()}
            self._pairs = tuple(pairs)
            self._schedules = None

    def set_thresholds(self, open_after: int, close_after: int, min_span: float) -> None:
        """The tracker's hysteresis (from confirm_count and confirm_interval), on each reload."""
        with self._lock:
            self._tracker.set_thresholds(open_after, close_after, min_span)

    def _zone(self, vantage: str) -> ZoneInfo:
        return self._zones.get(vantage) or ZoneInfo("UTC")

    def observe(self, item: Observation | Result) -> list[EpisodeEvent]:
        """Take one result; return the episode events it caused (to be stored)."""
        o = item if isinstance(item, Observation) else Observation.of(item)
        if is_local(o.failure):
            return []  # the machine's own failure says nothing of reachability (docs/verdicts.md)
        with self._lock:
            return self._observe(o, count=True)

    def _observe(self, o: Observation, *, count: bool) -> list[EpisodeEvent]:
        self._hourly.add(o, self._zone(o.vantage))
        events = self._tracker.observe(o)
        for event in events:
            e = event.episode
            self._episodes[e.key] = e
            if event.kind == "closed":
                self._version += 1
            if event.kind == "opened" and count:
                if e.target is None:
                    self._shutdowns[e.vantage] += 1
                else:
                    self._totals[(e.vantage, e.target, e.verdict)] += 1
        return events

    def seed(
        self,
        measurements: Iterable[Observation],
        episodes: Iterable[Episode] = (),
        hourly: Iterable[tuple[str, str, str, int, int, int]] = (),
    ) -> None:
        """Restore state after a restart, counting nothing as new.

        `episodes`: the stored episodes of the window (for the schedules); `hourly`: rows of the
        `hourly_reachability` view (vantage, target, local_day, local_hour, probes, ok) for the
        window; `measurements`: the recent ones, oldest first, from before the earliest open
        episode began, replayed through the tracker so open episodes carry on where they were.
        Pass the hourly rows up to the first replayed measurement, or the replay counts twice.
        """
        with self._lock:
            for e in episodes:
                self._episodes[e.key] = e
            for vantage, target, day, hour, probes, ok in hourly:
                self._hourly.add_counts(vantage, target, day, hour, probes, ok)
            for o in measurements:
                self._observe(o, count=False)
            self._version += 1

    def open_episodes(self) -> list[Episode]:
        with self._lock:
            return self._tracker.open_episodes()

    def snapshot(self, now: datetime) -> BlackoutSnapshot:
        """The metrics' view at `now` (UTC); forgets what has left the window."""
        with self._lock:
            self._prune(now)
            hourly = {
                pair: {hour: stat.ratio for hour, stat in sorted(hours.items())}
                for pair, hours in sorted(self._hourly.profile().items())
            }
            return BlackoutSnapshot(
                pairs=self._pairs,
                vantages=tuple(dict.fromkeys(v for v, _ in self._pairs)),
                active=tuple(self._tracker.open_episodes()),
                totals=dict(self._totals),
                shutdowns=dict(self._shutdowns),
                hourly=hourly,
                schedules=self._inferred(now),
            )

    def _prune(self, now: datetime) -> None:
        # The earliest first day over every zone (UTC-12 .. UTC+14): a day's margin is enough.
        first = (now - timedelta(days=self.days)).date().isoformat()
        self._hourly.prune(first)
        horizon = now - timedelta(days=self.days + 1)
        self._episodes = {
            k: e for k, e in self._episodes.items() if e.ended_at is None or e.started_at >= horizon
        }

    def _inferred(self, now: datetime) -> tuple[Schedule, ...]:
        stamp = (self._version, now.strftime("%Y-%m-%dT%H"))  # at most once an hour when quiet
        if self._schedules is not None and self._schedules[0] == stamp:
            return self._schedules[1]
        by_scope: dict[tuple[str, str | None], list[Episode]] = {}
        for e in self._episodes.values():
            by_scope.setdefault((e.vantage, e.target), []).append(e)
        days_with_data: dict[tuple[str, str | None], set[str]] = {}
        for v, t, day, _ in self._hourly.cells:
            days_with_data.setdefault((v, t), set()).add(day)
            days_with_data.setdefault((v, None), set()).add(day)
        schedules: list[Schedule] = []
        for (vantage, target), episodes in sorted(
            by_scope.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
        ):
            zone = self._zone(vantage)
            first = window_start(now, zone, self.days)
            observed = {
                date.fromisoformat(d) for d in days_with_data.get((vantage, target), ()) if d >= first
            }
            pattern = infer_pattern(episodes, zone.key, now, days=self.days, observed_days=observed or None)
            schedules += pattern.schedules
        self._schedules = (stamp, tuple(schedules))
        return self._schedules[1]
