"""`probe.lab.simulate`: days of probing on a virtual clock, as the daemon would probe them."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from probe.cli import main
from probe.lab.simulate import Progress, Simulation, natural_start, simulate
from tests.simulate.conftest import evening, rows

UTC = dt.UTC
# Off the hour, so the rule's edges fall between two base slots (as they would in real life).
START = dt.datetime(2019, 5, 20, 0, 7, tzinfo=UTC)
INTERVAL = 900.0
CONFIRM = 30.0


def when(row: dict[str, object]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(row["started_at"])).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def evening_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """Two days of the evening scenario, once for the module's tests."""
    tmp = tmp_path_factory.mktemp("evening")
    db = tmp / "sim.db"
    sim = Simulation(days=2, start=START, interval=INTERVAL, confirm_interval=CONFIRM, confirm_count=2)
    summary = asyncio.run(simulate(evening(), sim, f"sqlite:///{db}", tmp / "state"))
    return db, summary


def test_every_measurement_is_in_the_database(evening_run: tuple[Path, object]) -> None:
    db, summary = evening_run
    stored = rows(db)
    assert len(stored) == summary.measurements > 0  # type: ignore[attr-defined]
    assert {(r["vantage"], r["target"]) for r in stored} == {
        (v, t) for v in ("censored", "control") for t in ("site", "wiki")
    }


def test_base_probes_fall_on_the_interval_grid(evening_run: tuple[Path, object]) -> None:
    db, _ = evening_run
    times = [when(r) for r in rows(db) if r["vantage"] == "control" and r["target"] == "wiki"]
    expected = [START + dt.timedelta(seconds=INTERVAL * k) for k in range(int(2 * 86400 / INTERVAL))]
    # The control pair never changes verdict, so it is probed on the grid and only there.
    assert sorted(set(times)) == expected
    assert all(START <= t < START + dt.timedelta(days=2) for t in times)


def test_blocked_exactly_inside_the_evening_window(evening_run: tuple[Path, object]) -> None:
    db, _ = evening_run
    pair = [r for r in rows(db) if r["vantage"] == "censored" and r["target"] == "site"]
    for r in pair:
        t = when(r)
        inside = dt.time(20) <= t.time() < dt.time(22)
        assert r["verdict"] == ("tls_blocked" if inside else "ok"), (t, r["verdict"], r["reason"])
    blocked_days = {when(r).date() for r in pair if r["verdict"] == "tls_blocked"}
    assert blocked_days == {START.date(), START.date() + dt.timedelta(days=1)}


def test_each_change_is_reprobed_at_the_confirm_interval(evening_run: tuple[Path, object]) -> None:
    db, summary = evening_run
    times = {when(r) for r in rows(db) if r["vantage"] == "censored" and r["target"] == "site"}
    for day in (0, 1):
        base = START + dt.timedelta(days=day)
        onset = base.replace(hour=20, minute=7)  # first slot inside 20:00-22:00
        offset = base.replace(hour=22, minute=7)  # first slot after
        for change in (onset, offset):
            assert change in times
            assert change + dt.timedelta(seconds=CONFIRM) in times, change
            # Confirmed on the second sight: no third re-probe.
            assert change + dt.timedelta(seconds=2 * CONFIRM) not in times
    off_grid = {t for t in times if (t - START).total_seconds() % INTERVAL}
    assert len(off_grid) == 4  # two changes a day, one re-probe each
    assert summary.confirmations >= 4  # type: ignore[attr-defined]


def test_the_stripe_stays_at_local_hours_across_an_offset_change(tmp_path: Path) -> None:
    # Asia/Almaty: UTC+6 until 2024-03-01 00:00, UTC+5 since.
    zone = ZoneInfo("Asia/Almaty")
    start = dt.datetime(2024, 2, 28, 0, 7, tzinfo=zone)
    sim = Simulation(days=4, start=start, interval=1800, confirm_interval=CONFIRM)
    db = tmp_path / "dst.db"
    asyncio.run(simulate(evening("Asia/Almaty"), sim, f"sqlite:///{db}", tmp_path / "state"))
    pair = [r for r in rows(db) if r["vantage"] == "censored" and r["target"] == "site"]
    blocked_utc_hours: dict[bool, set[int]] = {True: set(), False: set()}
    for r in pair:
        local = when(r).astimezone(zone)
        inside = dt.time(20) <= local.time() < dt.time(22)
        assert r["verdict"] == ("tls_blocked" if inside else "ok"), (local, r["verdict"])
        if inside:
            blocked_utc_hours[local.date() >= dt.date(2024, 3, 1)].add(when(r).hour)
    assert blocked_utc_hours[False] == {14, 15}  # 20:00-22:00 at UTC+6
    assert blocked_utc_hours[True] == {15, 16}  # 20:00-22:00 at UTC+5


def test_loss_fails_probes_at_the_configured_rate(tmp_path: Path) -> None:
    loss = 0.1
    sim = Simulation(
        days=1, start=START, interval=1800, loss=loss, seed=7, step_timeout=0.2, confirm_interval=600
    )
    db = tmp_path / "loss.db"
    no_rules = evening().model_copy(update={"rules": []})
    summary = asyncio.run(simulate(no_rules, sim, f"sqlite:///{db}", tmp_path / "state"))
    stored = rows(db)
    failed = [r for r in stored if r["failure"] is not None]
    # Lossy attempts per probe: its connection, and the bulk download's for targets with one.
    # DNS queries are retransmitted (3 tries), so DNS fails a probe only when all are lost.
    low, high = loss, 1 - (1 - loss) ** 2 + loss**3
    rate = len(failed) / len(stored)
    assert summary.measurements == len(stored) >= 150
    assert low - 0.05 <= rate <= high + 0.05, (len(failed), len(stored))
    assert {r["failure"] for r in failed} <= {"connection_reset", "generic_timeout_error"}


def test_stop_keeps_what_was_measured(tmp_path: Path) -> None:
    db = tmp_path / "stop.db"
    sim = Simulation(days=2, start=START, interval=1800)

    async def run() -> object:
        stop = asyncio.Event()

        def progress(p: Progress) -> None:
            if p.fraction >= 0.25:
                stop.set()  # what Ctrl-C does

        return await simulate(
            evening(), sim, f"sqlite:///{db}", tmp_path / "state", stop=stop, on_progress=progress
        )

    summary = asyncio.run(run())
    assert summary.stopped  # type: ignore[attr-defined]
    assert len(rows(db)) == summary.measurements > 0  # type: ignore[attr-defined]
    assert summary.reached < START + dt.timedelta(days=1)  # type: ignore[attr-defined]


def test_natural_start_is_local_midnight_of_the_first_dated_rule() -> None:
    scenario = evening("Asia/Almaty").model_copy()
    assert natural_start(scenario, today=dt.date(2020, 1, 2)) == dt.datetime(
        2020, 1, 2, tzinfo=ZoneInfo("Asia/Almaty")
    )
    from probe.lab import load_scenario

    kz = natural_start(load_scenario("kazakhstan-2019"))
    assert kz == dt.datetime(2018, 3, 1, tzinfo=ZoneInfo("Asia/Almaty"))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--vantages", "nowhere"], "curfew: error: unknown vantage 'nowhere'"),
        (["--targets", "facebook,nope"], "curfew: error: unknown target 'nope'"),
        (["--targets", "warning"], "curfew: error: unknown target 'warning'"),  # never probed
        (["--days", "0"], "curfew: error: --days, --interval and --confirm-interval must be > 0"),
    ],
)
def test_bad_arguments_are_a_usage_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    db = tmp_path / "sim.db"
    common = ["--scenario", "kazakhstan-2019", "--days", "1", "--db", f"sqlite:///{db}"]
    code = main(["lab", "simulate", *common, "--state-dir", str(tmp_path / "state"), *args])
    assert code == 2  # like argparse's own usage errors; 1 is for a run that failed
    assert named in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "state").exists()  # nothing was started
