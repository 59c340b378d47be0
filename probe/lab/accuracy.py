"""How well detected episodes match a scenario's truth. Pure functions.

A lab rule says exactly when it was active; a simulation measured it; `probe.episodes.detect`
found episodes in the measurements. `true_windows` lists a rule's windows over a span (daily
windows placed on each local day with zoneinfo, so offset changes are followed), `match`
pairs each true window with the episode that overlaps it and reports signed onset and offset
errors (detected - true, seconds), and `spread` sums errors up as median, p90 and max.

    windows = true_windows(scenario.rules[0], scenario.timezone, start, end)
    matches, false_episodes = match(episodes, windows)
    print(spread([m.onset_error for m in matches if m.onset_error is not None]))
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from probe.episodes.model import Episode
from probe.lab.scenario import Rule

TrueWindow = tuple[dt.datetime, dt.datetime]


def true_windows(rule: Rule, zone: str, start: dt.datetime, end: dt.datetime) -> list[TrueWindow]:
    """The UTC stretches in which `rule` is active, clipped to [`start`, `end`); `zone` is the
    scenario's (a rule's own `when.timezone` wins). A rule with no `when` is always active."""
    window = rule.when.window(zone) if rule.when is not None else None
    lo = max(start, window.start) if window is not None and window.start is not None else start
    hi = min(end, window.until) if window is not None and window.until is not None else end
    lo, hi = lo.astimezone(dt.UTC), hi.astimezone(dt.UTC)
    if window is None or window.daily is None:
        return [(lo, hi)] if lo < hi else []
    daily = window.daily
    tz = ZoneInfo(daily.zone)
    out: list[TrueWindow] = []
    day = lo.astimezone(tz).date() - dt.timedelta(days=1)
    while day <= hi.astimezone(tz).date():
        if day.weekday() in daily.weekdays:
            end_day = day + dt.timedelta(days=1) if daily.end <= daily.start else day
            on = dt.datetime.combine(day, daily.start, tz).astimezone(dt.UTC)
            off = dt.datetime.combine(end_day, daily.end, tz).astimezone(dt.UTC)
            on, off = max(on, lo), min(off, hi)
            if on < off:
                out.append((on, off))
        day += dt.timedelta(days=1)
    return out


@dataclass(frozen=True)
class Match:
    """A true window and the detected episode overlapping it (None: missed). Errors are
    detected minus true, in seconds; None where there is nothing to compare (a miss, an
    episode still open, or a true edge at the span's border, which no probe could see)."""

    truth: TrueWindow
    episode: Episode | None
    onset_error: float | None
    offset_error: float | None


def match(
    episodes: Iterable[Episode], windows: Sequence[TrueWindow], span: TrueWindow | None = None
) -> tuple[list[Match], list[Episode]]:
    """Each true window with the first episode that overlaps it, and the episodes that
    overlap no true window (false episodes). Edges on the border of `span` get no error."""
    found = sorted(episodes, key=lambda e: e.started_at)
    used: set[int] = set()
    matches: list[Match] = []
    for on, off in windows:
        hit = next(
            (
                i
                for i, e in enumerate(found)
                if i not in used and e.started_at < off and (e.ended_at is None or e.ended_at > on)
            ),
            None,
        )
        if hit is None:
            matches.append(Match((on, off), None, None, None))
            continue
        used.add(hit)
        e = found[hit]
        onset = None if span is not None and on <= span[0] else (e.started_at - on).total_seconds()
        offset = None
        if e.ended_at is not None and not (span is not None and off >= span[1]):
            offset = (e.ended_at - off).total_seconds()
        matches.append(Match((on, off), e, onset, offset))
    false = [e for i, e in enumerate(found) if i not in used]
    return matches, false


@dataclass(frozen=True)
class Spread:
    """Absolute errors in seconds: how many, median, 90th percentile, max."""

    count: int
    median: float
    p90: float
    max: float

    def __str__(self) -> str:
        return f"n={self.count} median={self.median:.1f}s p90={self.p90:.1f}s max={self.max:.1f}s"


def spread(errors: Iterable[float]) -> Spread:
    """Median, p90 (nearest rank) and max of the absolute values; NaNs when there are none.

    >>> str(spread([-10, 20, 30, 40, -150]))
    'n=5 median=30.0s p90=150.0s max=150.0s'
    """
    values = sorted(abs(e) for e in errors)
    if not values:
        return Spread(0, math.nan, math.nan, math.nan)
    rank = max(0, math.ceil(0.9 * len(values)) - 1)
    return Spread(len(values), statistics.median(values), values[rank], values[-1])
