"""The pattern on the local clock: hour-of-day reachability and recurring schedules."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from probe.episodes import Episode, Observation
from probe.episodes.pattern import (
    HourlyCounts,
    Schedule,
    hourly_reachability,
    infer_pattern,
    local_slot,
    weekdays_label,
)

ALMATY = ZoneInfo("Asia/Almaty")


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=ALMATY).astimezone(UTC)


def episode(
    day: date,
    start: tuple[int, int],
    end: tuple[int, int],
    verdict: str = "tls_blocked",
    failure: str | None = "connection_reset",
    target: str | None = "youtube",
) -> Episode:
    s, e = local(day, *start), local(day, *end)
    if e <= s:
        e += timedelta(days=1)
    return Episode("kz-almaty", target, s, e, verdict, failure, 10, s, s, e, e)


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


MAY = days(date(2019, 5, 6), 14)  # Monday 6 May .. Sunday 19 May 2019
END = local(date(2019, 5, 19), 23, 59)


def test_local_slot_follows_the_offset_change() -> None:
    # Asia/Almaty: UTC+6 until 1 March 2024, UTC+5 after; 20:00 local both sides.
    assert local_slot(datetime(2024, 2, 29, 14, 0, tzinfo=UTC), ALMATY) == ("2024-02-29", 20)
    assert local_slot(datetime(2024, 3, 1, 15, 0, tzinfo=UTC), ALMATY) == ("2024-03-01", 20)
    assert local_slot(datetime(2024, 3, 1, 14, 0, tzinfo=UTC), ALMATY) == ("2024-03-01", 19)
    assert local_slot(datetime(2021, 3, 1, 19, 0, tzinfo=UTC), ZoneInfo("Asia/Tehran")) == ("2021-03-01", 22)


def test_hourly_reachability_stripe_across_the_offset_change() -> None:
    # Every 15 minutes for 14 days around 1 March 2024; blocked 20:00-22:00 local every evening.
    rows = []
    t = datetime(2024, 2, 23, 0, 0, tzinfo=UTC)
    while t < datetime(2024, 3, 8, tzinfo=UTC):
        hour = t.astimezone(ALMATY).hour
        rows.append(Observation("kz-almaty", "youtube", t, "tls_blocked" if 20 <= hour < 22 else "ok"))
        t += timedelta(minutes=15)
    profile = hourly_reachability(rows, {"kz-almaty": "Asia/Almaty"}, end=datetime(2024, 3, 8, tzinfo=UTC))
    by_hour = {h: s.ratio for h, s in profile[("kz-almaty", "youtube")].items()}
    assert by_hour[20] == by_hour[21] == 0.0
    assert all(ratio == 1.0 for h, ratio in by_hour.items() if h not in (20, 21))
    assert sorted(by_hour) == list(range(24))


def test_hourly_reachability_counts_only_conclusive_verdicts_in_the_window() -> None:
    t = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)  # 20:00 in Almaty
    rows = [
        Observation("kz-almaty", "youtube", t, "ok"),
        Observation("kz-almaty", "youtube", t + timedelta(minutes=5), "tls_blocked"),
        Observation("kz-almaty", "youtube", t + timedelta(minutes=10), "inconclusive"),
        Observation("kz-almaty", "youtube", t + timedelta(minutes=15), "vantage_down"),
        Observation("kz-almaty", "youtube", t - timedelta(days=20), "ok"),  # outside 14 days
    ]
    profile = hourly_reachability(rows, {"kz-almaty": "Asia/Almaty"}, end=t + timedelta(hours=1))
    stat = profile[("kz-almaty", "youtube")][20]
    assert (stat.probes, stat.ok, stat.ratio) == (2, 1, 0.5)
    assert list(profile[("kz-almaty", "youtube")]) == [20]


def test_hourly_counts_prune_old_days() -> None:
    counts = HourlyCounts()
    counts.add_counts("v", "t", "2019-05-01", 20, 3, 1)
    counts.add_counts("v", "t", "2019-05-10", 20, 2, 2)
    counts.prune("2019-05-05")
    stat = counts.profile()[("v", "t")][20]
    assert (stat.probes, stat.ok) == (2, 2)


def test_daily_evening_schedule_with_jitter_and_a_one_off() -> None:
    jitter = [0, 5, -5, 10, 0, -10, 5, 0, 0, 5, -5, 0, 10, 0]
    evenings = [
        episode(d, (20, 0 + max(j, 0)), (22, 10 + j))
        for d, j in zip(MAY, jitter, strict=True)
        if d not in (date(2019, 5, 9), date(2019, 5, 15))
    ]
    victory_day = episode(date(2019, 5, 9), (13, 0), (20, 0), "tcp_blocked", "generic_timeout_error")
    pattern = infer_pattern([*evenings, victory_day], "Asia/Almaty", END)
    [schedule] = pattern.schedules
    assert schedule.describe() == (
        "blocked daily 20:00-22:10 Asia/Almaty on 12 of 14 days, tls_blocked (connection_reset)"
    )
    assert (schedule.window, schedule.days, schedule.daily) == ("20:00-22:10", "12/14", True)
    assert pattern.one_offs == (victory_day,)


def test_weekday_schedule() -> None:
    workdays = [episode(d, (9, 0), (18, 0)) for d in MAY if d.weekday() < 5]
    [schedule] = infer_pattern(workdays, "Asia/Almaty", END).schedules
    assert schedule.weekdays == frozenset(range(5))
    assert schedule.days == "mon-fri"
    assert schedule.describe().startswith("blocked mon-fri 09:00-18:00 Asia/Almaty on 10 of 14 days")


def test_two_missing_days_are_not_a_weekday_rule() -> None:
    # Missing on both Tuesdays: too few to call it "every day but Tuesday".
    evenings = [episode(d, (20, 0), (22, 0)) for d in MAY if d.weekday() != 1]
    [schedule] = infer_pattern(evenings, "Asia/Almaty", END).schedules
    assert (schedule.daily, schedule.days) == (True, "12/14")


def test_schedule_stays_at_local_time_across_the_offset_change() -> None:
    window = days(date(2024, 2, 23), 14)
    evenings = [episode(d, (20, 0), (22, 10)) for d in window]
    utc_starts = {e.started_at.hour for e in evenings}
    assert utc_starts == {14, 15}  # the stripe moves in UTC ...
    [schedule] = infer_pattern(evenings, "Asia/Almaty", local(window[-1], 23)).schedules
    assert (schedule.start_local, schedule.end_local) == (time(20, 0), time(22, 10))  # ... not locally
    assert schedule.days == "14/14"


def test_nightly_shutdown_across_midnight() -> None:
    yangon = ZoneInfo("Asia/Yangon")
    nights = []
    for d in days(date(2021, 2, 15), 10):
        s = datetime(d.year, d.month, d.day, 1, 0, tzinfo=yangon).astimezone(UTC)
        e = s + timedelta(hours=8)
        nights.append(Episode("mm", None, s, e, "vantage_down", "dns_servfail_error", 96, s, s, e, e))
    end = nights[-1].ended_at
    assert end is not None
    [schedule] = infer_pattern(nights, "Asia/Yangon", end, days=10).schedules
    assert schedule.describe() == (
        "vantage down daily 01:00-09:00 Asia/Yangon on 10 of 10 days, vantage_down (dns_servfail_error)"
    )


def test_too_few_days_are_one_offs() -> None:
    two = [episode(MAY[0], (20, 0), (22, 0)), episode(MAY[1], (20, 0), (22, 0))]
    pattern = infer_pattern(two, "Asia/Almaty", END)
    assert pattern.schedules == () and pattern.one_offs == tuple(two)


def test_a_flap_in_the_evening_is_still_one_evening() -> None:
    evenings = []
    for d in MAY[:5]:
        evenings += [episode(d, (20, 0), (20, 50)), episode(d, (21, 0), (22, 0))]
    [schedule] = infer_pattern(evenings, "Asia/Almaty", END).schedules
    assert (schedule.window, schedule.days_seen) == ("20:00-22:00", 5)


def test_open_and_old_episodes_are_left_out() -> None:
    evenings = [episode(d, (20, 0), (22, 0)) for d in MAY]
    still_open = Episode("kz-almaty", "youtube", END, None, "tls_blocked", None, 2, END, END)
    old = episode(date(2019, 4, 1), (20, 0), (22, 0))
    pattern = infer_pattern([old, *evenings, still_open], "Asia/Almaty", END)
    assert pattern.schedules[0].days == "14/14" and pattern.one_offs == ()


def test_dominant_technique_weighted_by_probes() -> None:
    evenings = [episode(d, (20, 0), (22, 0)) for d in MAY[:3]]
    evenings.append(episode(MAY[3], (20, 0), (22, 0), "dns_blocked", "dns_nxdomain_error"))
    assert infer_pattern(evenings, "Asia/Almaty", END).schedules[0].verdict == "tls_blocked"


@pytest.mark.parametrize(
    ("weekdays", "label"),
    [
        ({0, 1, 2, 3, 4}, "mon-fri"),
        ({5, 6}, "sat-sun"),
        ({0, 2, 4}, "mon,wed,fri"),
        ({0, 1, 3}, "mon-tue,thu"),
    ],
)
def test_weekdays_label(weekdays: set[int], label: str) -> None:
    assert weekdays_label(weekdays) == label


def test_schedule_without_failure() -> None:
    s = Schedule("v", "t", time(20), time(22), "UTC", 5, 7, frozenset(range(7)), "http_blocked", None)
    assert s.describe() == "blocked daily 20:00-22:00 UTC on 5 of 7 days, http_blocked"
