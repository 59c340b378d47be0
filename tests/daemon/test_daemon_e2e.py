"""`curfew run` end to end: a subprocess against the lab, scraped and queried like a user would."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from tests.daemon.harness import FAST_PROBE, Daemon, Relay, daemon_config, metric, query
from tests.integration.conftest import CENSORED, scenario

BEFORE = dt.datetime(2019, 5, 20, 12, 0, tzinfo=dt.UTC)
DURING = dt.datetime(2019, 5, 20, 14, 30, tzinfo=dt.UTC)
AFTER = dt.datetime(2019, 5, 20, 17, 0, tzinfo=dt.UTC)
BLACKOUT = {
    "action": "tls_reset",
    "vantages": [CENSORED],
    "targets": ["site"],
    "when": {"from": "2019-05-20T14:00:00+00:00", "until": "2019-05-20T16:00:00+00:00"},
}


SILENCE = dict(BLACKOUT, action="tls_silence")
WAIT = 60.0
"""Seconds to wait for what takes a few: a bound for a failing run only (a wait ends as soon as
it is met), generous so that a loaded 2-core machine does not fail what works."""
INTERVAL = 4.0  # harness.daemon_config's base interval; confirm_interval is 1 s


@pytest.fixture
async def lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lab]:
    data = scenario([getattr(request, "param", BLACKOUT)])
    for target in data["targets"]:
        target["bulk"] = False
    async with Lab(parse_scenario(data), tmp_path / "lab") as running:
        running.set_time(BEFORE)
        yield running


@pytest.fixture
async def daemon(lab: Lab, tmp_path: Path, database_url: str) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "curfew.yaml", daemon_config(lab, tmp_path, database_url))
    try:
        yield d
    finally:
        await d.kill()


async def verdicts(database: str, vantage: str, target: str) -> list[tuple[str, dt.datetime]]:
    rows = await query(
        database,
        "SELECT verdict, started_at FROM measurements WHERE vantage = :v AND target = :t ORDER BY started_at",
        v=vantage,
        t=target,
    )
    return [(r[0], as_utc(r[1])) for r in rows]


def as_utc(value: dt.datetime | str) -> dt.datetime:
    """Raw SQL gives SQLite's text timestamps as str, PostgreSQL's as aware datetimes."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def test_a_blackout_switched_on_and_off_mid_run(lab: Lab, daemon: Daemon, database_url: str) -> None:
    await daemon.start()
    samples = await daemon.scrape()
    # Known pairs exist from start-up, at 0.
    assert (
        metric(samples, "curfew_probe_runs_total", vantage=CENSORED, target="site", verdict="tls_blocked")
        == 0
    )

    async def seen(verdict: str) -> bool:
        return any(v == verdict for v, _ in await verdicts(database_url, CENSORED, "site"))

    await daemon.wait_for(lambda: seen("ok"), WAIT, "an ok measurement")
    lab.set_time(DURING)
    switched_on = dt.datetime.now(dt.UTC)
    await daemon.wait_for(lambda: seen("tls_blocked"), WAIT, "the blackout")

    async def confirmed_blocked() -> bool:
        rows = [v for v, at in await verdicts(database_url, CENSORED, "site") if at >= switched_on]
        return rows.count("tls_blocked") >= 2

    await daemon.wait_for(confirmed_blocked, WAIT, "a confirmed blackout")
    samples = await daemon.scrape()
    assert metric(samples, "curfew_probe_success", vantage=CENSORED, target="site") == 0
    assert (
        metric(samples, "curfew_probe_runs_total", vantage=CENSORED, target="site", verdict="tls_blocked")
        or 0
    ) >= 2
    assert (
        metric(
            samples,
            "curfew_probe_failures_total",
            vantage=CENSORED,
            target="site",
            operation="tls_handshake",
            failure="connection_reset",
        )
        or 0
    ) >= 1
    assert metric(samples, "curfew_probe_success", vantage="control", target="site") == 1

    async def episode_open() -> bool:
        samples = await daemon.scrape()
        return metric(samples, "curfew_blackout_active", vantage=CENSORED, target="site") == 1

    await daemon.wait_for(episode_open, WAIT, "the blackout episode to open")

    lab.set_time(AFTER)
    switched_off = dt.datetime.now(dt.UTC)

    async def back_ok() -> bool:
        rows = [v for v, at in await verdicts(database_url, CENSORED, "site") if at >= switched_off]
        return rows.count("ok") >= 2

    await daemon.wait_for(back_ok, WAIT, "the end of the blackout")
    samples = await daemon.scrape()
    assert metric(samples, "curfew_blackout_active", vantage=CENSORED, target="site") == 0
    assert (
        metric(samples, "curfew_blackouts_total", vantage=CENSORED, target="site", verdict="tls_blocked") == 1
    )
    assert await daemon.stop() == 0
    episodes = await query(
        database_url, "SELECT verdict, failure, started_at, ended_at FROM blackouts WHERE target = 'site'"
    )
    assert len(episodes) == 1
    verdict, failure, started, ended = episodes[0]
    assert (verdict, failure) == ("tls_blocked", "connection_reset")
    assert ended is not None
    # The onset lies between the last ok probe (which started before the switch) and the first
    # blocked one (which reached the lab after it, having started at most its DNS and TCP steps
    # earlier): a bracket that holds however late the probes ran.
    (after, before), *_ = await query(
        database_url, "SELECT onset_after, onset_before FROM blackouts WHERE target = 'site'"
    )
    assert as_utc(after) <= switched_on
    assert as_utc(before) >= switched_on - dt.timedelta(seconds=2)
    assert as_utc(after) <= as_utc(started) <= as_utc(before)

    # Adaptive re-probing: after each change the next probe came at confirm_interval (1 s),
    # before the base interval (4 s) would have brought it; the 3 s between them is the margin
    # for a loaded machine's lag.
    rows = await verdicts(database_url, CENSORED, "site")
    changes = [i for i in range(1, len(rows)) if rows[i][0] != rows[i - 1][0]]
    assert len(changes) >= 2
    for i in changes:
        if i + 1 < len(rows):
            gap = (rows[i + 1][1] - rows[i][1]).total_seconds()
            assert gap < INTERVAL, (rows[i], rows[i + 1])


@pytest.mark.parametrize("lab", [SILENCE], indirect=True)
async def test_sigterm_with_probes_in_flight_keeps_every_completed_measurement(
    lab: Lab, daemon: Daemon, database_url: str, tmp_path: Path
) -> None:
    # tls_silence keeps the censored probes in flight for their whole 5 s deadline.
    slow = dict(FAST_PROBE, timeouts=dict(FAST_PROBE["timeouts"], tls_handshake=3.0))
    daemon.write(daemon_config(lab, tmp_path, database_url, interval=1, grace_period=30, probe=slow))
    lab.set_time(DURING)
    await daemon.start()
    silenced = f"vantage={CENSORED} target=site verdict=tls_blocked"
    await daemon.wait_for(lambda: any(silenced in line for line in daemon.lines), WAIT, "a silenced probe")
    # The next run of the pair starts within its 1 s interval and then hangs for 3 s: in flight.
    await asyncio.sleep(1.5)
    assert await daemon.stop(signal.SIGTERM) == 0
    logged = len(daemon.measurement_lines())
    stopping = next(i for i, line in enumerate(daemon.lines) if "event=stopping" in line)
    finished_in_grace = [line for line in daemon.lines[stopping:] if "event=measurement " in line]
    assert finished_in_grace, "\n".join(daemon.lines[-40:])
    (count,) = (await query(database_url, "SELECT count(*) FROM measurements"))[0]
    assert count == logged
    assert any("event=stopped" in line for line in daemon.lines)


async def test_sighup_swaps_a_good_config_and_keeps_the_old_one_on_a_bad_one(
    lab: Lab, daemon: Daemon, database_url: str, tmp_path: Path
) -> None:
    await daemon.start()
    config = dict(daemon.config)
    config["targets"] = [t for t in config["targets"] if t["name"] != "site"]
    daemon.write(config)
    daemon.send(signal.SIGHUP)
    await daemon.wait_for(lambda: any("event=reloaded" in line for line in daemon.lines), WAIT, "reload")

    async def site_gone() -> bool:
        samples = await daemon.scrape()
        return (
            metric(samples, "curfew_probe_runs_total", vantage=CENSORED, target="site", verdict="ok") is None
        )

    await daemon.wait_for(site_gone, WAIT, "the removed pair's series to vanish")
    daemon.config_path.write_text("vantages: [\n")
    daemon.send(signal.SIGHUP)
    await daemon.wait_for(
        lambda: any("event=reload-rejected" in line for line in daemon.lines), WAIT, "rejection"
    )
    # Still alive and probing with the old config.
    before = len(daemon.measurement_lines())
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) > before, WAIT, "probing to go on")
    assert await daemon.stop() == 0
    rows = await query(database_url, "SELECT name, active FROM targets ORDER BY name")
    assert [(name, bool(active)) for name, active in rows] == [("site", False), ("wiki", True)]


async def test_kill_9_then_restart_resumes_with_a_consistent_database(
    lab: Lab, daemon: Daemon, database_url: str, tmp_path: Path
) -> None:
    await daemon.start()
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 3, WAIT, "some measurements")
    await daemon.kill()
    logged = len(daemon.measurement_lines())
    second = Daemon(daemon.config_path, daemon.config)
    try:
        await second.start()
        await second.wait_for(lambda: len(second.measurement_lines()) >= 2, WAIT, "probing to resume")
        assert await second.stop() == 0
    finally:
        await second.kill()
    rows = await query(database_url, "SELECT count(*), count(DISTINCT uid) FROM measurements")
    count, distinct = rows[0]
    assert count == distinct  # nothing written twice
    # Everything logged before the kill reached the database (journal replay), plus the second run's.
    assert count >= logged + len(second.measurement_lines())


async def test_database_down_for_a_while_and_back_loses_nothing_and_keeps_order(
    lab: Lab, daemon: Daemon, database_url: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    relay = None
    lock = None
    if url.get_backend_name() == "postgresql":
        relay = Relay(url.host or "127.0.0.1", url.port or 5432)
        await relay.restore()
        served = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    else:
        served = database_url
    daemon.write(daemon_config(lab, tmp_path, served, interval=1))
    await daemon.start()
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 4, WAIT, "some measurements")

    # The outage: PostgreSQL unreachable, or SQLite locked by someone else's long transaction.
    if relay is not None:
        await relay.cut()
    else:
        path = url.database
        assert path is not None
        lock = sqlite3.connect(path, timeout=1, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")

    async def spooling() -> bool:
        return (metric(await daemon.scrape(), "curfew_spooled_measurements") or 0) > 0

    await daemon.wait_for(spooling, WAIT, "measurements to pile up in the spool")
    during = len(daemon.measurement_lines())
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= during + 3, WAIT, "probing to go on")

    async def write_failed() -> bool:
        return (metric(await daemon.scrape(), "curfew_store_write_errors_total") or 0) >= 1

    await daemon.wait_for(write_failed, WAIT, "a failed write to be counted")

    if relay is not None:
        await relay.restore()
    else:
        assert lock is not None
        lock.execute("ROLLBACK")
        lock.close()

    async def drained() -> bool:
        return metric(await daemon.scrape(), "curfew_spooled_measurements") == 0

    await daemon.wait_for(drained, WAIT, "the spool to drain")
    assert await daemon.stop() == 0
    if relay is not None:
        await relay.cut()
    logged = [
        tuple(
            field.split("=", 1)[1]
            for field in line.split()
            if field.split("=", 1)[0] in ("vantage", "target")
        )
        for line in daemon.measurement_lines()
    ]
    rows = await query(database_url, "SELECT vantage, target FROM measurements ORDER BY id")
    assert [tuple(r) for r in rows] == logged  # every one, in the order they were made
