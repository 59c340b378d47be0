"""Watch windows as tables: where the extra probes go around a predicted onset and offset."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from probe.daemon.watch import for_pair, watch_times
from probe.episodes.pattern import Schedule

ALL_WEEK = frozenset(range(7))


def schedule(
    start: time,
    end: time,
    zone: str = "Asia/Almaty",
    weekdays: frozenset[int] = ALL_WEEK,
    target: str | None = "fb",
    vantage: str = "kz",
) -> Schedule:
    return Schedule(vantage, target, start, end, zone, 5, 7, weekdays, "tls_blocked", "connection_reset")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def spans(times: list[datetime], step: float) -> list[tuple[str, str]]:
    """Consecutive runs of instants `step` apart, as (first, last) "MM-DD HH:MM:SS" in UTC."""
    runs: list[list[datetime]] = []
    for t in times:
        if runs and (t - runs[-1][-1]).total_seconds() == step:
            runs[-1].append(t)
        else:
            runs.append([t])
    return [(r[0].strftime("%m-%d %H:%M:%S"), r[-1].strftime("%m-%d %H:%M:%S")) for r in runs]


@pytest.mark.parametrize(
    ("case", "sched", "start", "days", "expected"),
    [
        (
            "Almaty before the offset change: UTC+6, 20:00 local is 14:00 UTC",
            schedule(time(20), time(22, 10)),
            utc(2024, 2, 28, 18),
            1,
            [("02-29 13:50:00", "02-29 14:10:00"), ("02-29 16:00:00", "02-29 16:20:00")],
        ),
        (
            "Almaty across 1 March 2024: UTC+6 on the 29th, UTC+5 from the 1st",
            schedule(time(20), time(22, 10)),
            utc(2024, 2, 29, 0),
            2,
            [
                ("02-29 13:50:00", "02-29 14:10:00"),
                ("02-29 16:00:00", "02-29 16:20:00"),
                ("03-01 14:50:00", "03-01 15:10:00"),
                ("03-01 17:00:00", "03-01 17:20:00"),
            ],
        ),
        (
            "a window crossing midnight ends the next local day",
            schedule(time(23, 0), time(1, 0), zone="UTC"),
            utc(2024, 5, 6, 12),
            1,
            [("05-06 22:50:00", "05-06 23:10:00"), ("05-07 00:50:00", "05-07 01:10:00")],
        ),
        (
            "an onset at midnight: the watch spans the change of day, cut at the span's end",
            schedule(time(0, 0), time(2, 0), zone="UTC"),
            utc(2024, 5, 6, 12),
            0.5,
            [("05-06 23:50:00", "05-06 23:59:30")],
        ),
        (
            "weekdays only: the Saturday and Sunday are skipped (2024-05-10 is a Friday)",
            schedule(time(20), time(21), zone="UTC", weekdays=frozenset(range(5))),
            utc(2024, 5, 10, 0),
            4,
            [
                ("05-10 19:50:00", "05-10 20:10:00"),
                ("05-10 20:50:00", "05-10 21:10:00"),
                ("05-13 19:50:00", "05-13 20:10:00"),
                ("05-13 20:50:00", "05-13 21:10:00"),
            ],
        ),
        (
            "Myanmar's half-hour offset (UTC+6:30): 01:00 local is 18:30 UTC the day before",
            schedule(time(1), time(9), zone="Asia/Yangon"),
            utc(2024, 5, 6, 0),
            1,
            [("05-06 02:20:00", "05-06 02:40:00"), ("05-06 18:20:00", "05-06 18:40:00")],
        ),
    ],
)
def test_watch_windows(
    case: str, sched: Schedule, start: datetime, days: float, expected: list[tuple[str, str]]
) -> None:
    times = watch_times([sched], start, start + timedelta(days=days), confirm_interval=30, margin=600)
    assert spans(times, 30) == expected, case
    assert all(start <= t < start + timedelta(days=days) for t in times)


def test_overlapping_windows_give_each_instant_once() -> None:
    # Onset and offset 10 minutes apart: their 20-minute windows overlap.
    sched = schedule(time(20), time(20, 10), zone="UTC")
    day = utc(2024, 5, 6)
    times = watch_times([sched], day, day + timedelta(days=1), confirm_interval=30, margin=600)
    assert spans(times, 30) == [("05-06 19:50:00", "05-06 20:20:00")]
    assert len(times) == len(set(times)) == 61


def test_instants_follow_the_pair_phase() -> None:
    sched = schedule(time(20), time(22), zone="UTC")
    day = utc(2024, 5, 6)
    times = watch_times([sched], day, day + timedelta(days=1), confirm_interval=30, margin=60, phase=7.5)
    assert [t.strftime("%H:%M:%S.%f")[:-4] for t in times[:4]] == [
        "19:59:07.50",
        "19:59:37.50",
        "20:00:07.50",
        "20:00:37.50",
    ]
    assert all((t.timestamp() - 7.5) % 30 == 0 for t in times)


def test_no_schedule_no_watch() -> None:
    day = utc(2024, 5, 6)
    assert watch_times([], day, day + timedelta(days=1), confirm_interval=30) == []


def test_a_pair_is_watched_for_its_own_schedules_and_its_vantage_shutdowns() -> None:
    own = schedule(time(20), time(22), target="fb")
    other = schedule(time(20), time(22), target="yt")
    shutdown = schedule(time(1), time(3), target=None)
    elsewhere = schedule(time(20), time(22), target="fb", vantage="astana")
    assert for_pair([own, other, shutdown, elsewhere], "kz", "fb") == [own, shutdown]


def test_bad_arguments_raise() -> None:
    day = utc(2024, 5, 6)
    with pytest.raises(ValueError):
        watch_times([], day, day, confirm_interval=0)
    with pytest.raises(ValueError):
        watch_times([], datetime(2024, 5, 6), day, confirm_interval=30)
