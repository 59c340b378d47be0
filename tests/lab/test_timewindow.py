"""Rule time windows as pure functions: a table of instants, no network, no clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from probe.lab.timewindow import Daily, Window, parse_clock, parse_daily

UTC = dt.UTC
ALMATY = ZoneInfo("Asia/Almaty")


def at(text: str, zone: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


EVENING = Daily(*parse_daily("20:00-22:10"), zone="Asia/Almaty")
NIGHT = Daily(*parse_daily("23:00-01:00"), zone="UTC")
MONDAY_NIGHT = Daily(*parse_daily("23:00-01:00"), zone="UTC", weekdays=frozenset({0}))
WEEKEND_DAY = Daily(*parse_daily("09:00-17:00"), zone="UTC", weekdays=frozenset({5, 6}))


@pytest.mark.parametrize(
    ("window", "instant", "expected"),
    [
        # 20:00-22:10 in Almaty, UTC+6 in 2019: 14:00-16:10 UTC.
        (EVENING, at("2019-05-01T13:59"), False),
        (EVENING, at("2019-05-01T14:00"), True),
        (EVENING, at("2019-05-01T16:09"), True),
        (EVENING, at("2019-05-01T16:10"), False),
        # After 1 March 2024 Almaty is UTC+5: the same wall-clock window is 15:00-17:10 UTC.
        (EVENING, at("2024-02-29T14:30"), True),
        (EVENING, at("2024-03-02T14:30"), False),
        (EVENING, at("2024-03-02T15:00"), True),
        (EVENING, at("2024-03-02T17:09"), True),
        # Crossing midnight.
        (NIGHT, at("2019-05-01T22:59"), False),
        (NIGHT, at("2019-05-01T23:00"), True),
        (NIGHT, at("2019-05-02T00:30"), True),
        (NIGHT, at("2019-05-02T01:00"), False),
        # A crossing window belongs to the day it starts: Monday 23:00 to Tuesday 01:00.
        (MONDAY_NIGHT, at("2019-05-06T23:30"), True),  # Monday
        (MONDAY_NIGHT, at("2019-05-07T00:30"), True),  # Tuesday morning, Monday's window
        (MONDAY_NIGHT, at("2019-05-06T00:30"), False),  # Monday morning, Sunday's window
        (MONDAY_NIGHT, at("2019-05-07T23:30"), False),  # Tuesday evening
        (WEEKEND_DAY, at("2019-05-04T10:00"), True),  # Saturday
        (WEEKEND_DAY, at("2019-05-06T10:00"), False),  # Monday
    ],
)
def test_daily_window(window: Daily, instant: dt.datetime, expected: bool) -> None:
    assert window.contains(instant) is expected


MAY_9 = Window(start=at("2019-05-09T13:00", ALMATY), until=at("2019-05-09T20:00", ALMATY))
SINCE = Window(start=at("2019-07-17T00:00", ALMATY))
UNTIL = Window(until=at("2019-08-07T00:00", ALMATY))
EVENINGS_FROM_2018 = Window(start=at("2018-03-01T00:00", ALMATY), daily=EVENING)


@pytest.mark.parametrize(
    ("window", "instant", "expected"),
    [
        (MAY_9, at("2019-05-09T06:59"), False),
        (MAY_9, at("2019-05-09T07:00"), True),  # 13:00 +06
        (MAY_9, at("2019-05-09T13:59"), True),
        (MAY_9, at("2019-05-09T14:00"), False),  # until is exclusive
        (SINCE, at("2019-07-16T17:59"), False),
        (SINCE, at("2019-07-16T18:00"), True),
        (SINCE, at("2030-01-01T00:00"), True),
        (UNTIL, at("2001-01-01T00:00"), True),
        (UNTIL, at("2019-08-06T18:00"), False),
        (EVENINGS_FROM_2018, at("2018-02-27T15:00"), False),
        (EVENINGS_FROM_2018, at("2018-03-05T15:00"), True),
        (EVENINGS_FROM_2018, at("2018-03-05T12:00"), False),
    ],
)
def test_absolute_window(window: Window, instant: dt.datetime, expected: bool) -> None:
    assert window.contains(instant) is expected


def test_window_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        Window().contains(dt.datetime(2019, 5, 9))


@pytest.mark.parametrize("text", ["20:00", "25:00-26:00", "20:00-20:00", "8-9", "20:60-21:00"])
def test_bad_daily_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_daily(text)


def test_midnight_as_24_00() -> None:
    assert parse_clock("24:00") == dt.time(0, 0)
    assert Daily(*parse_daily("22:00-24:00"), zone="UTC").contains(at("2019-05-01T23:59"))
