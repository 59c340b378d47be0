"""When a lab rule is active: daily wall-clock windows and absolute ranges. Pure functions.

A `Window` combines an optional absolute range ``[start, until)`` with an optional daily
window in an IANA zone (crossing midnight allowed) restricted to some weekdays. A daily
window that crosses midnight belongs to the day it starts on: ``mon 23:00-01:00`` covers
Monday 23:00 to Tuesday 01:00. Wall-clock time is read in the zone at the instant being
tested, so offset changes (Asia/Almaty UTC+6 -> UTC+5 on 2024-03-01) are followed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_clock(text: str) -> dt.time:
    """Parse ``"HH:MM"`` (``"24:00"`` means the end of the day, stored as 00:00)."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"expected HH:MM, got {text!r}")
    h, m = int(hours), int(minutes)
    if (h, m) == (24, 0):
        return dt.time(0, 0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return dt.time(h, m)


def parse_daily(text: str) -> tuple[dt.time, dt.time]:
    """Parse ``"20:00-22:10"`` into (start, end); equal ends are rejected (use no daily window)."""
    first, sep, second = text.partition("-")
    if not sep:
        raise ValueError(f'expected "HH:MM-HH:MM", got {text!r}')
    start, end = parse_clock(first), parse_clock(second)
    if start == end:
        raise ValueError(f"empty daily window {text!r}")
    return start, end


@dataclass(frozen=True)
class Daily:
    """A wall-clock window repeated every listed weekday (0 = Monday) in `zone`."""

    start: dt.time
    end: dt.time
    zone: str
    weekdays: frozenset[int] = frozenset(range(7))

    def contains(self, now: dt.datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.zone))
        clock = local.time().replace(tzinfo=None)
        today = local.weekday()
        if self.start < self.end:
            return today in self.weekdays and self.start <= clock < self.end
        # Crosses midnight: the evening part belongs to today, the morning part to yesterday.
        if clock >= self.start:
            return today in self.weekdays
        return clock < self.end and (today - 1) % 7 in self.weekdays


@dataclass(frozen=True)
class Window:
    """Active when inside ``[start, until)`` (either open) and inside `daily` (if given)."""

    start: dt.datetime | None = None
    until: dt.datetime | None = None
    daily: Daily | None = None

    def contains(self, now: dt.datetime) -> bool:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if self.start is not None and now < self.start:
            return False
        if self.until is not None and now >= self.until:
            return False
        return self.daily is None or self.daily.contains(now)


ALWAYS = Window()
