"""Controls one simulation group lends to the later ones (probe.lab.lending), and the Prober
borrowing them instead of measuring them again."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from probe.daemon.prober import Prober
from probe.lab import lending
from probe.lab.lending import Ledger, Loans, ledger_path
from probe.model import Measurement
from tests.daemon.test_prober_scheduler import FakeNetwork, config, fake

T0 = 1_558_310_400.0  # 2019-05-20 00:00 UTC


def at(vantage: str, target: str, when: float, blocked: bool = False) -> Measurement:
    return replace(fake(vantage, target, blocked), started_at=dt.datetime.fromtimestamp(when, dt.UTC))


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    lending.clear(tmp_path / "lending")
    return tmp_path / "lending"


def test_the_latest_control_started_within_the_age_is_lent(directory: Path) -> None:
    ledger = Ledger(ledger_path(directory, 0))
    early, late = at("kz", "wiki", T0), at("kz", "wiki", T0 + 30)
    ledger.lend([early, at("ctl", "fb", T0)], until=T0 + 30)
    ledger.lend([late], until=T0 + 300)
    ledger.close()
    loans = Loans([ledger_path(directory, 0)])
    # A copy of what was lent, read back from the ledger.
    assert loans.fresh("kz", "wiki", T0, max_age=15) == early
    assert loans.fresh("kz", "wiki", T0 + 10, max_age=15) == early
    assert loans.fresh("kz", "wiki", T0 + 20, max_age=15) is None  # too old; the next not started
    assert loans.fresh("kz", "wiki", T0 + 40, max_age=15) == late
    assert loans.fresh("ctl", "fb", T0 + 40, max_age=15) is None
    assert loans.fresh("kz", "fb", T0 + 40, max_age=15) is None  # never lent
    assert loans.fresh("kz", "wiki", T0 + 400, max_age=15) is None  # the group is done
    loans.close()


def test_two_earlier_groups_lending_the_same_instant_give_the_first_ones(directory: Path) -> None:
    first, second = at("kz", "wiki", T0), at("kz", "wiki", T0)
    for index, m in enumerate((first, second)):
        ledger = Ledger(ledger_path(directory, index))
        ledger.lend([m], until=T0 + 300)
        ledger.close()
    # Read in either order, the same one is chosen: what a group borrows never depends on
    # which ledger it happened to read first.
    for paths in ([0, 1], [1, 0]):
        loans = Loans([ledger_path(directory, i) for i in paths])
        chosen = loans.fresh("kz", "wiki", T0 + 1, max_age=15)
        assert chosen is not None and chosen.uid == (first if paths[0] == 0 else second).uid
        loans.close()


def test_a_later_group_waits_for_an_earlier_one_that_has_not_got_there(directory: Path) -> None:
    lent = at("kz", "wiki", T0 + 300)

    def earlier_group() -> None:
        time.sleep(0.3)  # it has not even created its ledger yet
        ledger = Ledger(ledger_path(directory, 0))
        ledger.lend([], until=T0 + 300)  # its first instant: nothing lent
        time.sleep(0.3)
        ledger.lend([lent], until=T0 + 600)
        ledger.close()

    writer = threading.Thread(target=earlier_group)
    writer.start()
    try:
        loans = Loans([ledger_path(directory, 0)])
        assert loans.fresh("kz", "wiki", T0, max_age=15) is None
        # At T0 + 300 the earlier group's instant must be read whatever the timing.
        borrowed = loans.fresh("kz", "wiki", T0 + 300, max_age=15)
        assert borrowed is not None and borrowed.uid == lent.uid
        loans.close()
    finally:
        writer.join(timeout=10)
    assert not writer.is_alive()


def test_a_group_that_stopped_or_failed_holds_nobody(directory: Path) -> None:
    ledger = Ledger(ledger_path(directory, 0))
    ledger.lend([at("kz", "wiki", T0)], until=T0 + 300)
    ledger.close()  # stopped after its first instant
    loans = Loans([ledger_path(directory, 0)])
    assert loans.fresh("kz", "wiki", T0 + 86_400, max_age=15) is None  # returns, does not wait
    loans.close()


def test_a_ledger_left_by_an_earlier_run_is_never_read(tmp_path: Path) -> None:
    directory = tmp_path / "lending"
    lending.clear(directory)
    old = Ledger(ledger_path(directory, 0))
    old.lend([at("kz", "wiki", T0)], until=T0 + 300)
    old.close()
    lending.clear(directory)  # the next run starts
    assert not ledger_path(directory, 0).exists()
    Ledger(ledger_path(directory, 0)).close()
    with pytest.raises(FileExistsError):  # never appended to, never shared by two groups
        Ledger(ledger_path(directory, 0))


async def test_the_prober_borrows_a_lent_control_instead_of_measuring_it() -> None:
    net = FakeNetwork()
    lent = fake("kz", "wiki", False)
    asked: list[tuple[str, str]] = []

    def borrow(vantage: str, target: str) -> Measurement | None:
        asked.append((vantage, target))
        return lent if (vantage, target) == ("kz", "wiki") else None

    prober = Prober(config(), measure_fn=net, borrow=borrow)
    results = await prober.run("kz", "fb")
    assert sorted(asked) == [("ctl", "fb"), ("kz", "wiki")]
    # The lent control is not measured again, nor returned to be stored (its lender stores it);
    # the one nobody lent is measured fresh, judged and returned.
    assert {(v, t) for v, t, _ in net.calls} == {("kz", "fb"), ("ctl", "fb")}
    assert [(r.measurement.vantage, r.measurement.target) for r in results] == [("kz", "fb"), ("ctl", "fb")]
    assert results[0].analysis.verdict == "ok"


async def test_a_borrowed_control_decides_the_verdict_as_a_measured_one_would() -> None:
    # The control target is down at the vantage in the lent measurement: with the pair blocked
    # too, the vantage is down (not a block), exactly as if the Prober had measured it.
    net = FakeNetwork()
    net.blocked.add(("kz", "fb"))
    net.blocked.add(("kz", "wiki"))
    measured = await Prober(config(), measure_fn=net).run("kz", "fb")
    lent = fake("kz", "wiki", True)
    net.calls.clear()
    borrowed = await Prober(config(), measure_fn=net, borrow=lambda v, t: lent if t == "wiki" else None).run(
        "kz", "fb"
    )
    assert ("kz", "wiki") not in {(v, t) for v, t, _ in net.calls}
    assert borrowed[0].analysis.verdict == measured[0].analysis.verdict == "vantage_down"


def test_a_stop_wakes_a_group_waiting_for_a_ledger_that_does_not_grow(directory: Path) -> None:
    ledger = Ledger(ledger_path(directory, 0))
    ledger.lend([], until=T0 + 300)  # its first instant, then nothing: hung, or very slow
    stop = threading.Event()
    loans = Loans([ledger_path(directory, 0)], stopped=stop.is_set)
    threading.Timer(0.3, stop.set).start()  # Ctrl-C, as the simulation's stop event
    # Returns once stopped (nothing lent for it: the caller measures the control itself).
    assert loans.fresh("kz", "wiki", T0 + 300, max_age=15) is None
    assert stop.is_set()
    loans.close()
    ledger.close()
