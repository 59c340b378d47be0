"""Scheduling maths as tables: spread of start times, and the re-probe state machine."""

from __future__ import annotations

import statistics

import pytest

from probe.daemon.schedule import Confirmation, advance, first_run_delay, spread_offset


def test_offsets_spread_uniformly_across_the_interval() -> None:
    offsets = [spread_offset(f"v{i % 7}", f"t{i}", 300) for i in range(2000)]
    assert all(0 <= o < 300 for o in offsets)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o // 30)] += 1
    assert min(buckets) > 150 and max(buckets) < 250  # about 200 per tenth
    assert abs(statistics.mean(offsets) - 150) < 15


def test_first_run_lands_on_the_pair_grid_whenever_the_daemon_starts() -> None:
    interval = 60.0
    slot = spread_offset("kz", "fb", interval)
    for now in (0.0, 17.5, 1_700_000_000.25):
        delay = first_run_delay(now, "kz", "fb", interval)
        assert 0 <= delay < interval
        assert abs(((now + delay) % interval) - slot) < 1e-6


@pytest.mark.parametrize(
    ("verdicts", "count", "expected"),
    [
        (["ok"], 2, Confirmation("ok")),
        (["ok", "ok"], 2, Confirmation("ok")),
        (["ok", "tls_blocked"], 2, Confirmation("ok", "tls_blocked", 1)),
        (["ok", "tls_blocked", "tls_blocked"], 2, Confirmation("tls_blocked")),
        (["ok", "tls_blocked", "ok"], 2, Confirmation("ok")),
        (["ok", "tls_blocked", "tcp_blocked"], 2, Confirmation("ok", "tcp_blocked", 1)),
        (["ok", "tls_blocked", "tls_blocked"], 3, Confirmation("ok", "tls_blocked", 2)),
        (["ok", "tls_blocked"], 1, Confirmation("tls_blocked")),
        (["ok", "tls_blocked", "tls_blocked", "ok"], 2, Confirmation("tls_blocked", "ok", 1)),
    ],
)
def test_confirmation_table(verdicts: list[str], count: int, expected: Confirmation) -> None:
    state = Confirmation()
    for verdict in verdicts:
        state = advance(state, verdict, count)
    assert state == expected
