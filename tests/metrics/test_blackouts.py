"""Blackout metrics from a Monitor fed on virtual time, read through our own registry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from probe.episodes import Observation
from probe.episodes.monitor import Monitor
from probe.metrics.blackouts import BlackoutCollector

ALMATY = ZoneInfo("Asia/Almaty")
PAIRS = [("kz-almaty", "youtube"), ("kz-almaty", "control")]
ZONES = {"kz-almaty": "Asia/Almaty"}


def evening(monitor: Monitor, day: date, blocked: tuple[int, int] = (20, 22)) -> datetime:
    """Probe both targets every 10 minutes of `day` (local); youtube blocked in `blocked` hours."""
    t = datetime(day.year, day.month, day.day, tzinfo=ALMATY).astimezone(UTC)
    for _ in range(144):
        hour = t.astimezone(ALMATY).hour
        verdict = "tls_blocked" if blocked[0] <= hour < blocked[1] else "ok"
        monitor.observe(Observation("kz-almaty", "youtube", t, verdict, "connection_reset"))
        monitor.observe(Observation("kz-almaty", "control", t + timedelta(seconds=30), "ok"))
        t += timedelta(minutes=10)
    return t


@pytest.fixture
def monitor() -> Monitor:
    m = Monitor(ZONES)
    m.set_config(ZONES, PAIRS)
    return m


def registry_for(monitor: Monitor, now: datetime) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(BlackoutCollector(lambda: monitor.snapshot(now)))
    return registry


def test_zero_series_for_configured_pairs(monitor: Monitor) -> None:
    r = registry_for(monitor, datetime(2019, 5, 20, tzinfo=UTC))
    yt = {"vantage": "kz-almaty", "target": "youtube"}
    assert r.get_sample_value("curfew_blackout_active", yt) == 0.0
    assert r.get_sample_value("curfew_blackouts_total", {**yt, "verdict": "tls_blocked"}) == 0.0
    assert r.get_sample_value("curfew_blackout_started_timestamp_seconds", yt) is None
    assert r.get_sample_value("curfew_vantage_shutdown_active", {"vantage": "kz-almaty"}) == 0.0
    assert r.get_sample_value("curfew_vantage_shutdowns_total", {"vantage": "kz-almaty"}) == 0.0
    assert r.get_sample_value("curfew_hourly_reachability_ratio", {**yt, "hour": "20"}) is None


def test_active_blackout_and_its_onset(monitor: Monitor) -> None:
    t = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)  # 20:00 Almaty
    for i, verdict in enumerate(["ok", "tls_blocked", "tls_blocked"]):
        monitor.observe(Observation("kz-almaty", "youtube", t + i * timedelta(minutes=5), verdict))
    r = registry_for(monitor, t + timedelta(minutes=15))
    yt = {"vantage": "kz-almaty", "target": "youtube"}
    assert r.get_sample_value("curfew_blackout_active", yt) == 1.0
    onset = (t + timedelta(minutes=2, seconds=30)).timestamp()
    assert r.get_sample_value("curfew_blackout_started_timestamp_seconds", yt) == onset
    assert r.get_sample_value("curfew_blackouts_total", {**yt, "verdict": "tls_blocked"}) == 1.0


def test_vantage_shutdown_metrics(monitor: Monitor) -> None:
    t = datetime(2019, 6, 9, 5, 0, tzinfo=UTC)
    for i, verdict in enumerate(["ok", "vantage_down", "vantage_down"]):
        for j, (v, target) in enumerate(PAIRS):
            monitor.observe(
                Observation(v, target, t + i * timedelta(minutes=5) + j * timedelta(seconds=10), verdict)
            )
    r = registry_for(monitor, t + timedelta(minutes=15))
    assert r.get_sample_value("curfew_vantage_shutdown_active", {"vantage": "kz-almaty"}) == 1.0
    assert r.get_sample_value("curfew_vantage_shutdowns_total", {"vantage": "kz-almaty"}) == 1.0
    assert (
        r.get_sample_value("curfew_vantage_shutdown_started_timestamp_seconds", {"vantage": "kz-almaty"})
        == (t + timedelta(minutes=2, seconds=35)).timestamp()
    )
    # Recorded once for the vantage, not as a blackout of each target.
    assert r.get_sample_value("curfew_blackout_active", {"vantage": "kz-almaty", "target": "youtube"}) == 0.0


def test_evening_stripe_and_recurring_schedule(monitor: Monitor) -> None:
    first = date(2019, 5, 6)
    for i in range(14):
        end = evening(monitor, first + timedelta(days=i))
    r = registry_for(monitor, end - timedelta(minutes=1))  # 23:59 on the 14th day
    yt = {"vantage": "kz-almaty", "target": "youtube"}
    assert r.get_sample_value("curfew_hourly_reachability_ratio", {**yt, "hour": "20"}) == 0.0
    assert r.get_sample_value("curfew_hourly_reachability_ratio", {**yt, "hour": "19"}) == 1.0
    assert r.get_sample_value("curfew_hourly_reachability_ratio", {**yt, "hour": "3"}) == 1.0
    # 20:00 first blocked probe, 19:50 last good: onset 19:55; offset between 21:50 and 22:00.
    info = {**yt, "window": "19:55-21:55", "days": "14/14", "verdict": "tls_blocked"}
    assert r.get_sample_value("curfew_recurring_blackout_info", info) == 1.0
    assert r.get_sample_value("curfew_blackouts_total", {**yt, "verdict": "tls_blocked"}) == 14.0
    assert "# TYPE curfew_recurring_blackout_info gauge" in generate_latest(r).decode()


def test_removed_pairs_vanish(monitor: Monitor) -> None:
    monitor.set_config(ZONES, [("kz-almaty", "control")])
    r = registry_for(monitor, datetime(2019, 5, 20, tzinfo=UTC))
    assert r.get_sample_value("curfew_blackout_active", {"vantage": "kz-almaty", "target": "youtube"}) is None


def test_seed_restores_an_open_episode_without_counting_it() -> None:
    t = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)
    rows = [
        Observation("kz-almaty", "youtube", t + i * timedelta(minutes=5), v)
        for i, v in enumerate(["ok", "tls_blocked", "tls_blocked"])
    ]
    monitor = Monitor(ZONES)
    monitor.seed(rows)
    [episode] = monitor.open_episodes()
    assert episode.onset_before == rows[1].started_at
    assert monitor.snapshot(t).totals == {}
    [event] = monitor.observe(Observation("kz-almaty", "youtube", t + timedelta(minutes=15), "tls_blocked"))
    assert (event.kind, event.episode.key) == ("updated", episode.key)


def test_the_window_forgets_old_days(monitor: Monitor) -> None:
    end = evening(monitor, date(2019, 5, 1))
    later = end + timedelta(days=20)
    assert monitor.snapshot(later).hourly == {}
    assert monitor.snapshot(later).schedules == ()
