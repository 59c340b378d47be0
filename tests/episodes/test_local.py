"""The episode monitor ignores results whose failure happened on the probe's own machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from probe.episodes import Observation
from probe.episodes.monitor import Monitor

START = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)


def test_local_failures_never_open_an_episode_nor_count_as_unreachable() -> None:
    monitor = Monitor({"kz": "Asia/Almaty"}, open_after=2, close_after=2)
    monitor.set_config({"kz": "Asia/Almaty"}, [("kz", "fb")])
    events = []
    for i in range(6):  # as a stored row might say, if any path ever stored one
        o = Observation("kz", "fb", START + timedelta(minutes=i), "dns_blocked", "local_failure: emfile")
        events += monitor.observe(o)
    snapshot = monitor.snapshot(START + timedelta(minutes=10))
    assert events == [] and snapshot.active == () and snapshot.hourly == {}
    # The same verdicts with a network failure do open one: the guard is what held.
    for i in range(2):
        events += monitor.observe(
            Observation("kz", "fb", START + timedelta(minutes=i), "dns_blocked", "dns_nxdomain_error")
        )
    assert [e.kind for e in events] == ["opened"]
