"""The agenda as tables on a virtual clock: base slots, confirmation re-probes, watch windows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time

import pytest

from probe.daemon.agenda import BASE, CONFIRM, WATCH, Agenda, Pair
from probe.daemon.schedule import spread_offset
from probe.episodes.pattern import Schedule

KZ_FB: Pair = ("kz", "fb")
KZ_WIKI: Pair = ("kz", "wiki")
T0 = datetime(2024, 3, 5, tzinfo=UTC).timestamp()


def grid(**kw: object) -> Agenda:
    """Two pairs on one grid anchored at T0 (the simulation's default)."""
    args: dict[str, object] = {"confirm_interval": 30.0, "confirm_count": 2, "anchor": T0, "spread": False}
    args.update(kw)
    return Agenda({KZ_FB: 300.0, KZ_WIKI: 300.0}, **args)  # type: ignore[arg-type]


def run(agenda: Agenda, until: float, verdict: Callable[[Pair, float], str]) -> list[tuple[float, Pair, str]]:
    """Drive the agenda on a virtual clock from T0 (inclusive) to `until`, as the simulation
    does: (seconds since T0, pair, kinds) for every due pair."""
    out: list[tuple[float, Pair, str]] = []
    due = agenda.next(T0, inclusive=True)
    for _ in range(10_000):
        if due.when >= until:
            return out
        for pair in due.pairs:
            out.append((due.when - T0, pair, "+".join(sorted(due.kinds[pair]))))
            agenda.record(pair, verdict(pair, due.when), due.when)
        due = agenda.next(due.when)
    raise AssertionError("the agenda never reached the end")


def of(rows: list[tuple[float, Pair, str]], pair: Pair) -> list[tuple[float, str]]:
    return [(t, kinds) for t, p, kinds in rows if p == pair]


def test_base_slots_every_interval_on_one_grid() -> None:
    rows = run(grid(), T0 + 900, lambda p, t: "ok")
    assert of(rows, KZ_FB) == [(0, BASE), (300, BASE), (600, BASE)]
    assert of(rows, KZ_WIKI) == of(rows, KZ_FB)


def test_spread_puts_each_pair_at_its_own_offset_whenever_asked() -> None:
    agenda = Agenda({KZ_FB: 60.0}, confirm_interval=30, confirm_count=2)  # the daemon: anchored at the epoch
    slot = spread_offset(*KZ_FB, 60.0)
    for now in (0.0, 17.5, 1_700_000_000.25):
        first = agenda.next_due(KZ_FB, now, inclusive=True)
        assert first is not None and 0 <= first - now < 60
        assert abs(first % 60 - slot) < 1e-5
        assert agenda.next_due(KZ_FB, first) == pytest.approx(first + 60)
        # APScheduler hands the instant back as a datetime, rounded to the microsecond: it is
        # still that instant, not one to fire again.
        seen = datetime.fromtimestamp(first, UTC).timestamp()
        assert agenda.kinds(KZ_FB, seen) == {BASE}
        assert agenda.next_due(KZ_FB, seen) == pytest.approx(first + 60)


@pytest.mark.parametrize(
    ("blocked", "expected"),
    [
        # (blocked from..until, seconds since T0) -> fb's runs: a change is re-probed 30 s later
        # until seen twice, then the base grid again.
        ((600, 1200), [(0, "base"), (300, "base"), (600, "base"), (630, "confirm"), (900, "base"),
                       (1200, "base"), (1230, "confirm"), (1500, "base")]),
        # Blocked for one probe only: the re-probe sees ok again, no episode of re-probing.
        ((600, 601), [(0, "base"), (300, "base"), (600, "base"), (630, "confirm"), (900, "base"),
                      (1200, "base"), (1500, "base")]),
        # Still changing at the re-probe: a third verdict keeps confirming.
        ((600, 630), [(0, "base"), (300, "base"), (600, "base"), (630, "confirm"), (900, "base"),
                      (1200, "base"), (1500, "base")]),
    ],
)  # fmt: skip
def test_confirmation_reprobes(blocked: tuple[float, float], expected: list[tuple[float, str]]) -> None:
    lo, hi = blocked

    def verdict(pair: Pair, t: float) -> str:
        return "tls_blocked" if pair == KZ_FB and lo <= t - T0 < hi else "ok"

    rows = run(grid(), T0 + 1800, verdict)
    assert of(rows, KZ_FB) == expected
    assert all(kinds == BASE for _, kinds in of(rows, KZ_WIKI))  # the other pair is untouched


def test_confirmation_count_three_reprobes_twice() -> None:
    def verdict(pair: Pair, t: float) -> str:
        return "tls_blocked" if pair == KZ_FB and t - T0 >= 300 else "ok"

    rows = run(grid(confirm_count=3), T0 + 900, verdict)
    assert of(rows, KZ_FB) == [(0, "base"), (300, "base"), (330, "confirm"), (360, "confirm"), (600, "base")]


def test_a_confirmation_on_a_base_slot_is_one_run_with_both_reasons() -> None:
    agenda = grid(confirm_interval=300)
    agenda.record(KZ_FB, "ok", T0)
    agenda.record(KZ_FB, "tls_blocked", T0)
    due = agenda.next(T0)
    assert due.when == T0 + 300
    assert due.pairs == (KZ_FB, KZ_WIKI)
    assert due.kinds[KZ_FB] == {BASE, CONFIRM}
    assert (due.confirmations, due.watch_only) == (1, 0)


def test_a_later_confirmation_replaces_the_pending_one() -> None:
    agenda = grid()
    agenda.record(KZ_FB, "ok", T0)
    agenda.record(KZ_FB, "tls_blocked", T0 + 10)  # confirming: due at +40
    agenda.record(KZ_FB, "tcp_blocked", T0 + 20)  # another change: due at +50 instead
    assert agenda.next_due(KZ_FB, T0 + 20) == T0 + 50
    assert CONFIRM not in agenda.kinds(KZ_FB, T0 + 40)


def evening(start: time = time(20), end: time = time(22, 10), target: str | None = "fb") -> Schedule:
    return Schedule("kz", target, start, end, "Asia/Almaty", 5, 7, frozenset(range(7)), "tls_blocked", None)


def test_watch_windows_probe_every_confirm_interval_around_each_edge() -> None:
    agenda = grid()
    day = T0  # 2024-03-05 00:00 UTC; Almaty is UTC+5 since 1 March: 20:00 local = 15:00 UTC
    assert agenda.plan_watch([evening()], day, day + 86400) == {KZ_FB: 2}
    rows = run(agenda, day + 86400, lambda p, t: "ok")
    watched = [(t, k) for t, k in of(rows, KZ_FB) if WATCH in k]
    onset, offset = 15 * 3600, 17 * 3600 + 600
    expected = [t for edge in (onset, offset) for t in range(edge - 600, edge + 601, 30)]
    assert [t for t, _ in watched] == expected
    # Where a watch instant meets a base slot, it is one run for both reasons.
    assert (onset, "base+watch") in watched and (onset - 30, "watch") in watched
    assert all(WATCH not in k for _, k in of(rows, KZ_WIKI))


def test_a_vantage_shutdown_schedule_watches_every_target_there() -> None:
    agenda = grid()
    planned = agenda.plan_watch([evening(target=None)], T0, T0 + 86400)
    assert planned == {KZ_FB: 2, KZ_WIKI: 2}


def test_planning_again_replaces_and_an_empty_plan_clears() -> None:
    agenda = grid()
    agenda.plan_watch([evening()], T0, T0 + 86400)
    before = [agenda.next_due(KZ_FB, T0 + t) for t in range(0, 86400, 600)]
    agenda.plan_watch([evening()], T0, T0 + 86400)
    assert [agenda.next_due(KZ_FB, T0 + t) for t in range(0, 86400, 600)] == before
    agenda.plan_watch([], T0, T0 + 86400)
    assert all(agenda.kinds(KZ_FB, T0 + t) <= {BASE} for t in range(0, 86400, 30))


def test_watch_windows_follow_the_zone_offset_change() -> None:
    # Asia/Almaty was UTC+6 until 1 March 2024: the evening onset moves from 14:00 to 15:00 UTC.
    feb29 = datetime(2024, 2, 29, tzinfo=UTC).timestamp()
    agenda = grid(anchor=feb29)
    agenda.plan_watch([evening()], feb29, feb29 + 2 * 86400)
    first_watch = [
        next(t for t in range(d * 86400, (d + 1) * 86400, 30) if WATCH in agenda.kinds(KZ_FB, feb29 + t))
        for d in (0, 1)
    ]
    assert [datetime.fromtimestamp(feb29 + t, UTC).strftime("%H:%M") for t in first_watch] == [
        "13:50",
        "14:50",
    ]


def test_reconfiguring_keeps_state_of_kept_pairs_and_forgets_removed_ones() -> None:
    agenda = grid()
    agenda.record(KZ_FB, "ok", T0)
    agenda.record(KZ_FB, "tls_blocked", T0)
    agenda.record(KZ_WIKI, "ok", T0)
    agenda.configure({KZ_FB: 600.0}, confirm_interval=30, confirm_count=2)
    assert agenda.pairs == (KZ_FB,)
    assert agenda.states[KZ_FB].candidate == "tls_blocked"
    assert agenda.next_due(KZ_FB, T0) == T0 + 30  # the pending confirmation survives
    assert agenda.next_due(KZ_FB, T0 + 30) == T0 + 600  # the new interval
    assert agenda.next_due(KZ_WIKI, T0) is None
    assert KZ_WIKI not in agenda.states


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Agenda({KZ_FB: 300.0}, confirm_interval=0, confirm_count=2)
    with pytest.raises(ValueError):
        Agenda({KZ_FB: 0.0}, confirm_interval=30, confirm_count=2)
