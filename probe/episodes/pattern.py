"""The pattern on the vantage's own clock: hour-of-day reachability and recurring schedules.

Every measurement and episode is placed in the vantage's IANA zone with zoneinfo at its own
instant, so offset changes are handled: Asia/Almaty moved from UTC+6 to UTC+5 on 1 March
2024, and a block at 20:00 local stays at 20:00 local across the change (15:00 UTC after it,
14:00 UTC before).

`infer_pattern` finds schedules in a pair's episodes over a rolling window: episodes whose
local windows agree (start and duration within `tolerance`) on at least `min_days` days make
a `Schedule` ("blocked daily 20:00-22:10 Asia/Almaty on 12 of 14 days, tls_blocked
(connection_reset)"); the rest are one-offs, listed apart (9 May 2019, 13:00-20:00).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from probe.episodes.model import BLOCKED_VERDICTS, Episode, Observation

DEFAULT_WINDOW_DAYS = 14
DEFAULT_TOLERANCE = timedelta(minutes=60)
DEFAULT_MIN_DAYS = 3
DEFAULT_MERGE_GAP = timedelta(minutes=30)
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_MINUTES: Final = 24 * 60


def local_slot(at: datetime, zone: tzinfo) -> tuple[str, int]:
    """The vantage-local day (YYYY-MM-DD) and hour (0-23) of a UTC instant.

    >>> from datetime import UTC
    >>> almaty = ZoneInfo("Asia/Almaty")
    >>> local_slot(datetime(2024, 2, 28, 14, 30, tzinfo=UTC), almaty)  # UTC+6 then
    ('2024-02-28', 20)
    >>> local_slot(datetime(2024, 3, 2, 15, 30, tzinfo=UTC), almaty)   # UTC+5 since 1 March 2024
    ('2024-03-02', 20)
    """
    local = at.astimezone(zone)
    return local.date().isoformat(), local.hour


# -- hour-of-day reachability ------------------------------------------------------------------


@dataclass
class HourStat:
    """Conclusive probes in one local hour: `ok` of them reached the target."""

    probes: int = 0
    ok: int = 0

    @property
    def ratio(self) -> float:
        return self.ok / self.probes if self.probes else 0.0


Pair = tuple[str, str]


@dataclass
class HourlyCounts:
    """Probes and oks per (vantage, target, local day, local hour): the same numbers as the
    `hourly_reachability` view. Only conclusive verdicts count (ok and the blocked ones);
    inconclusive, target_down and vantage_down say nothing about reachability at the vantage."""

    cells: dict[tuple[str, str, str, int], HourStat] = field(default_factory=dict)

    def add(self, o: Observation, zone: tzinfo) -> None:
        if o.verdict != "ok" and o.verdict not in BLOCKED_VERDICTS:
            return
        day, hour = local_slot(o.started_at, zone)
        self.add_counts(o.vantage, o.target, day, hour, 1, int(o.verdict == "ok"))

    def add_counts(self, vantage: str, target: str, day: str, hour: int, probes: int, ok: int) -> None:
        cell = self.cells.setdefault((vantage, target, day, hour), HourStat())
        cell.probes += probes
        cell.ok += ok

    def prune(self, first_day: str) -> None:
        """Forget the days before `first_day` (YYYY-MM-DD)."""
        self.cells = {k: v for k, v in self.cells.items() if k[2] >= first_day}

    def days(self, pair: Pair) -> set[date]:
        return {date.fromisoformat(d) for v, t, d, _ in self.cells if (v, t) == pair}

    def profile(self, first_day: str = "") -> dict[Pair, dict[int, HourStat]]:
        """Per pair, per local hour with data: the counts summed over the days from `first_day`."""
        out: dict[Pair, dict[int, HourStat]] = {}
        for (vantage, target, day, hour), cell in self.cells.items():
            if day < first_day:
                continue
            stat = out.setdefault((vantage, target), {}).setdefault(hour, HourStat())
            stat.probes += cell.probes
            stat.ok += cell.ok
        return out


def window_start(end: datetime, zone: tzinfo, days: int = DEFAULT_WINDOW_DAYS) -> str:
    """The first local day of the `days`-day window that ends on the local day of `end`."""
    return ((end.astimezone(zone)).date() - timedelta(days=days - 1)).isoformat()


def hourly_reachability(
    rows: Iterable[Observation],
    zones: dict[str, str],
    end: datetime,
    days: int = DEFAULT_WINDOW_DAYS,
) -> dict[Pair, dict[int, HourStat]]:
    """Reachability by local hour per (vantage, target) over the `days` local days ending
    with the one `end` falls on. `zones` maps vantage -> IANA zone (UTC if missing)."""
    counts = HourlyCounts()
    for o in rows:
        zone = ZoneInfo(zones.get(o.vantage, "UTC"))
        if o.started_at < end and o.started_at.astimezone(zone).date().isoformat() >= window_start(
            end, zone, days
        ):
            counts.add(o, zone)
    return counts.profile()


# -- recurring schedules -----------------------------------------------------------------------


def weekdays_label(weekdays: Collection[int]) -> str:
    """Weekdays (0 = Monday) as runs: "mon-fri", "sat-sun", "mon,wed,fri".

    >>> weekdays_label({0, 1, 2, 3, 4}), weekdays_label({5, 6}), weekdays_label({0, 2, 4})
    ('mon-fri', 'sat-sun', 'mon,wed,fri')
    """
    days = sorted(set(weekdays))
    runs: list[list[int]] = []
    for d in days:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(WEEKDAYS[r[0]] if len(r) == 1 else f"{WEEKDAYS[r[0]]}-{WEEKDAYS[r[-1]]}" for r in runs)


@dataclass(frozen=True)
class Schedule:
    """A recurring blackout of `target` (None: the whole vantage) at `vantage`, in local time.

    `start_local`/`end_local` are the medians of the episodes' local starts and ends;
    `days_seen` the local days it happened on out of `days_in_window` observed;
    `weekdays` (0 = Monday) the days of the week it keeps to.
    """

    vantage: str
    target: str | None
    start_local: time
    end_local: time
    zone: str
    days_seen: int
    days_in_window: int
    weekdays: frozenset[int]
    verdict: str
    failure: str | None

    @property
    def daily(self) -> bool:
        return len(self.weekdays) == 7

    @property
    def window(self) -> str:
        """Like "20:00-22:10"."""
        return f"{self.start_local:%H:%M}-{self.end_local:%H:%M}"

    @property
    def days(self) -> str:
        """ "12/14" for a daily schedule, else its weekdays ("mon-fri")."""
        return f"{self.days_seen}/{self.days_in_window}" if self.daily else weekdays_label(self.weekdays)

    def describe(self) -> str:
        """One sentence, e.g. "blocked daily 20:00-22:10 Asia/Almaty on 12 of 14 days,
        tls_blocked (connection_reset)"."""
        what = "vantage down" if self.target is None else "blocked"
        when = "daily" if self.daily else weekdays_label(self.weekdays)
        how = self.verdict if self.failure is None else f"{self.verdict} ({self.failure})"
        on = f"on {self.days_seen} of {self.days_in_window} days"
        return f"{what} {when} {self.window} {self.zone} {on}, {how}"


@dataclass(frozen=True)
class Pattern:
    schedules: tuple[Schedule, ...]
    one_offs: tuple[Episode, ...]


@dataclass
class _Window:
    """One or more episodes close together, on the local clock."""

    episodes: list[Episode]
    day: date  # local day of the start
    start: float  # minutes since local midnight
    duration: float  # minutes

    @property
    def end(self) -> float:
        return self.start + self.duration


def _windows(episodes: Sequence[Episode], zone: ZoneInfo, merge_gap: timedelta) -> list[_Window]:
    """Closed episodes as local windows; episodes less than `merge_gap` apart become one (a
    block that flapped once in the evening is still one evening)."""
    runs: list[list[Episode]] = []
    for e in sorted((e for e in episodes if e.ended_at is not None), key=lambda e: e.started_at):
        last = runs[-1][-1] if runs else None
        if last is not None and last.ended_at is not None and e.started_at - last.ended_at <= merge_gap:
            runs[-1].append(e)
        else:
            runs.append([e])
    out = []
    for run in runs:
        start = run[0].started_at.astimezone(zone)
        end = max(e.ended_at for e in run if e.ended_at is not None)
        minutes = start.hour * 60 + start.minute + start.second / 60
        out.append(_Window(run, start.date(), minutes, (end - run[0].started_at).total_seconds() / 60))
    return out


def _offset(a: float, b: float) -> float:
    """`a - b` in minutes of the day, the short way round midnight."""
    return (a - b + _DAY_MINUTES / 2) % _DAY_MINUTES - _DAY_MINUTES / 2


def _members(windows: Sequence[_Window], start: float, duration: float, tolerance: float) -> list[_Window]:
    return [
        w
        for w in windows
        if abs(_offset(w.start, start)) <= tolerance and abs(w.duration - duration) <= tolerance
    ]


def _cluster(windows: Sequence[_Window], tolerance: float) -> list[_Window]:
    """The largest set of windows (by days) that agree with one another, around its medians."""
    best: list[_Window] = []
    for w in windows:
        members = _members(windows, w.start, w.duration, tolerance)
        if len({m.day for m in members}) > len({b.day for b in best}):
            best = members
    if not best:
        return best
    # Re-centre on the medians so the first window found does not decide the edges.
    anchor = best[0].start
    start = (anchor + statistics.median(_offset(m.start, anchor) for m in best)) % _DAY_MINUTES
    duration = statistics.median(m.duration for m in best)
    return _members(windows, start, duration, tolerance) or best


def _clock(minutes: float) -> time:
    m = round(minutes) % _DAY_MINUTES
    return time(m // 60, m % 60)


def _weekdays(seen: set[date], observed: set[date]) -> frozenset[int]:
    """The weekdays a schedule keeps to: those it happened on for at least half of the days
    observed. Called daily (all seven) unless the weekdays it skipped were observed at least
    4 times in all without it (two weekends in a 14-day window): with fewer, a skipped Tuesday
    is more likely chance than a rule."""
    kept = set()
    skipped_days = 0
    for wd in range(7):
        days = [d for d in observed if d.weekday() == wd]
        hits = [d for d in seen if d.weekday() == wd]
        if days and len(hits) * 2 >= len(days):
            kept.add(wd)
        else:
            skipped_days += len(days) - len(hits)
    return frozenset(kept) if skipped_days >= 4 else frozenset(range(7))


def infer_pattern(
    episodes: Sequence[Episode],
    zone: str,
    end: datetime,
    *,
    days: int = DEFAULT_WINDOW_DAYS,
    observed_days: Collection[date] | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    min_days: int = DEFAULT_MIN_DAYS,
    merge_gap: timedelta = DEFAULT_MERGE_GAP,
) -> Pattern:
    """Recurring schedules and one-offs among one pair's (or one vantage's) episodes.

    Only closed episodes that started in the `days` local days ending with the day of `end`
    count. `observed_days` are the local days with measurements (default: every day of the
    window); a schedule needs episodes on `min_days` of them that agree within `tolerance`
    on the local start and on the duration. Episodes left over are one-offs.
    """
    tz = ZoneInfo(zone)
    first = date.fromisoformat(window_start(end, tz, days))
    last = end.astimezone(tz).date()
    observed = (
        {d for d in observed_days if first <= d <= last}
        if observed_days is not None
        else {first + timedelta(days=i) for i in range(days)}
    )
    in_window = [e for e in episodes if e.started_at < end and e.started_at.astimezone(tz).date() >= first]
    windows = _windows(in_window, tz, merge_gap)
    schedules: list[Schedule] = []
    limit = tolerance.total_seconds() / 60
    while windows:
        members = _cluster(windows, limit)
        seen = {m.day for m in members}
        if len(seen) < min_days:
            break
        anchor = members[0].start
        start = anchor + statistics.median(_offset(m.start, anchor) for m in members)
        finish = start + statistics.median(m.duration for m in members)
        techniques: Counter[tuple[str, str | None]] = Counter()
        for m in members:
            for e in m.episodes:
                techniques[(e.verdict, e.failure)] += e.probes
        (verdict, failure), _ = techniques.most_common(1)[0]
        sample = members[0].episodes[0]
        schedules.append(
            Schedule(
                vantage=sample.vantage,
                target=sample.target,
                start_local=_clock(start),
                end_local=_clock(finish),
                zone=zone,
                days_seen=len(seen),
                days_in_window=max(len(observed | seen), len(seen)),
                weekdays=_weekdays(seen, observed | seen),
                verdict=verdict,
                failure=failure,
            )
        )
        taken = {id(m) for m in members}
        windows = [w for w in windows if id(w) not in taken]
    one_offs = tuple(e for w in windows for e in w.episodes)
    return Pattern(tuple(schedules), one_offs)
