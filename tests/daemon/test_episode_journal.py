"""kill -9 right after a blackout episode opened, while the database could not take it: the
next start writes it from the journal (episodes take the measurements' write path)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from tests.daemon.harness import Daemon, daemon_config, metric, query
from tests.daemon.test_daemon_e2e import AFTER, BEFORE, BLACKOUT, DURING, as_utc
from tests.daemon.test_failures import Outage
from tests.integration.conftest import CENSORED, scenario


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    data = scenario([BLACKOUT])
    for target in data["targets"]:
        target["bulk"] = False
    async with Lab(parse_scenario(data), tmp_path / "lab") as running:
        running.set_time(BEFORE)
        yield running


async def test_kill_9_right_after_an_episode_opened_then_restart_the_episode_is_stored(
    lab: Lab, tmp_path: Path, database_url: str
) -> None:
    outage = Outage(database_url)
    config = daemon_config(lab, tmp_path, outage.served)
    first = Daemon(tmp_path / "curfew.yaml", config)
    second = Daemon(tmp_path / "curfew.yaml", config)
    await outage.end()  # serving (a PostgreSQL relay starts cut)
    try:
        await first.start()
        await first.wait_for(lambda: len(first.measurement_lines()) >= 2, 20, "some measurements")
        await outage.begin()  # from here the database takes nothing
        lab.set_time(DURING)

        async def episode_open() -> bool:
            samples = await first.scrape()
            return metric(samples, "curfew_blackout_active", vantage=CENSORED, target="site") == 1

        await first.wait_for(episode_open, 30, "the blackout episode to open")
        killed_at = dt.datetime.now(dt.UTC)
        await first.kill()
        await outage.end()
        assert await query(database_url, "SELECT count(*) FROM blackouts") == [(0,)]

        lab.set_time(AFTER)  # no new episode: what is found is the one from before the kill
        await second.start()

        async def stored() -> bool:
            return await query(database_url, "SELECT count(*) FROM blackouts") != [(0,)]

        await second.wait_for(stored, 30, "the journaled episode in the database")
        assert await second.stop() == 0
    finally:
        await first.kill()
        await second.kill()
        if outage.relay is not None:
            await outage.relay.cut()
        elif outage.lock is not None:
            await outage.end()
    rows = await query(database_url, "SELECT vantage, target, verdict, started_at FROM blackouts")
    assert len(rows) == 1
    vantage, target, verdict, started = rows[0]
    assert (vantage, target, verdict) == (CENSORED, "site", "tls_blocked")
    assert as_utc(started) < killed_at
