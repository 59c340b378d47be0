"""Watch windows, pure: extra probe instants where a recurring blackout is expected to begin
or end.

With a 5-minute base interval an onset is only known to within 5 minutes, and re-probing
after a change confirms the new state but cannot look back. Once `probe.episodes.pattern`
has inferred a `Schedule` for a pair ("daily 20:00-22:10 Asia/Almaty"), probing it every
`confirm_interval` from `margin` before to `margin` after each predicted local onset and
offset pins both to within half a `confirm_interval` on the days the pattern holds. Before
a schedule exists only the normal re-probing applies.

Times are wall-clock times in the schedule's zone, placed on each local day with zoneinfo,
so offset changes are followed (Asia/Almaty: 20:00 is 14:00 UTC before 1 March 2024, 15:00
UTC after). The instants lie on the pair's own phase (`phase` seconds past the epoch, modulo
`confirm_interval`), so pairs with the same schedule do not all fire in the same second.

    schedules = monitor.snapshot(now).schedules
    times = watch_times(for_pair(schedules, "kz-almaty", "facebook"), midnight, midnight + DAY,
                        confirm_interval=30, margin=600)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from probe.episodes.pattern import Schedule

DEFAULT_MARGIN = 600.0
"""Seconds watched on each side of a predicted onset or offset (10 minutes)."""


def for_pair(schedules: Iterable[Schedule], vantage: str, target: str) -> list[Schedule]:
    """The schedules that concern probing (`vantage`, `target`): the target's own, and the
    vantage's shutdowns (target None), whose edges any target at the vantage can pin."""
    return [s for s in schedules if s.vantage == vantage and s.target in (target, None)]


def edges(schedule: Schedule, day: date) -> tuple[datetime, datetime] | None:
    """The predicted onset and offset (UTC) of `schedule` on the local `day` its window starts,
    or None when it does not run on that weekday. A window ending at or before its start
    crosses midnight and ends the next day.

    >>> from datetime import time
    >>> s = Schedule("kz", "fb", time(23, 30), time(0, 30), "Asia/Almaty", 5, 7, frozenset(range(7)),
    ...              "tls_blocked", None)
    >>> [e.isoformat() for e in edges(s, date(2024, 3, 5))]
    ['2024-03-05T18:30:00+00:00', '2024-03-05T19:30:00+00:00']
    """
    if day.weekday() not in schedule.weekdays:
        return None
    zone = ZoneInfo(schedule.zone)
    end_day = day + timedelta(days=1) if schedule.end_local <= schedule.start_local else day
    onset = datetime.combine(day, schedule.start_local, zone).astimezone(UTC)
    offset = datetime.combine(end_day, schedule.end_local, zone).astimezone(UTC)
    return onset, offset


def _grid(lo: float, hi: float, step: float, phase: float) -> list[float]:
    """Instants k * step + phase (unix seconds) within [lo, hi]."""
    first = math.ceil(round((lo - phase) / step, 9)) * step + phase
    count = math.floor(round((hi - first) / step, 9)) + 1
    return [first + i * step for i in range(max(0, count))]


def watch_times(
    schedules: Sequence[Schedule],
    start: datetime,
    end: datetime,
    *,
    confirm_interval: float,
    margin: float = DEFAULT_MARGIN,
    phase: float = 0.0,
) -> list[datetime]:
    """The extra probe instants (UTC, sorted, unique) in [`start`, `end`) for a pair with
    these `schedules`: every `confirm_interval` seconds, on the grid of `phase`, within
    `margin` seconds of each predicted onset and offset.

    >>> from datetime import time
    >>> s = Schedule("kz", "fb", time(20), time(22, 10), "Asia/Almaty", 12, 14, frozenset(range(7)),
    ...              "tls_blocked", "connection_reset")
    >>> day = datetime(2024, 3, 5, tzinfo=UTC)
    >>> times = watch_times([s], day, day + timedelta(days=1), confirm_interval=30, margin=60)
    >>> [t.strftime("%H:%M:%S") for t in times][:5]  # UTC+5: 20:00 local, then 22:10
    ['14:59:00', '14:59:30', '15:00:00', '15:00:30', '15:01:00']
    >>> [t.strftime("%H:%M:%S") for t in times][5:]
    ['17:09:00', '17:09:30', '17:10:00', '17:10:30', '17:11:00']
    """
    if confirm_interval <= 0 or margin < 0:
        raise ValueError("confirm_interval must be > 0 and margin >= 0")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    lo, hi = start.timestamp(), end.timestamp()
    found: set[float] = set()
    for schedule in schedules:
        zone = ZoneInfo(schedule.zone)
        # A window that starts the day before `start` can still end (or be watched) inside it.
        first = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date() + timedelta(days=1)
        day = first
        while day <= last:
            predicted = edges(schedule, day)
            day += timedelta(days=1)
            if predicted is None:
                continue
            for edge in predicted:
                at = edge.timestamp()
                window = _grid(at - margin, at + margin, confirm_interval, phase)
                found.update(round(t, 6) for t in window if lo <= t < hi)
    return [datetime.fromtimestamp(t, UTC) for t in sorted(found)]


def watched_edges(
    schedules: Sequence[Schedule], start: datetime, end: datetime, margin: float = DEFAULT_MARGIN
) -> list[datetime]:
    """The predicted onsets and offsets (UTC, sorted, unique) whose watch window
    [edge - `margin`, edge + `margin`] meets [`start`, `end`)."""
    found: set[datetime] = set()
    reach = timedelta(seconds=margin)
    for schedule in schedules:
        zone = ZoneInfo(schedule.zone)
        day = start.astimezone(zone).date() - timedelta(days=1)
        while day <= end.astimezone(zone).date() + timedelta(days=1):
            for edge in edges(schedule, day) or ():
                if edge - reach < end and edge + reach >= start:
                    found.add(edge)
            day += timedelta(days=1)
    return sorted(found)
