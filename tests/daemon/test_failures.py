"""`curfew run` when its database fails it: down at start, down later, or black-holed (a
listening socket that never answers). What an operator checks: the daemon becomes READY
within a bound and keeps probing, each failing background task is logged and counted, SIGTERM
exits 0 with ``event=stopped`` within the grace period and a few seconds, and no measurement
is lost."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from probe.daemon.run import CLOSE_BUDGET, EXIT_BOUND, STARTUP_BOUND
from tests.daemon.harness import Daemon, Relay, free_port, metric, query

GRACE = 2.0
# A loaded 2-core machine needs seconds to start Python and import the daemon's libraries.
SLACK = 20.0


def offline_config(tmp_path: Path, database: str, **overrides: Any) -> dict[str, Any]:
    """A daemon probing a loopback port nobody listens on: every probe ends at once, so
    measurements keep coming without a lab."""
    closed = free_port()
    data: dict[str, Any] = {
        "interval": 1,
        "confirm_interval": 1,
        "confirm_count": 2,
        "grace_period": GRACE,
        "data_dir": str(tmp_path / "data"),
        "database": database,
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "probe": {"timeouts": {"dns": 1, "tcp_connect": 1, "tls_handshake": 1, "total": 3}},
        "vantages": [{"name": "here", "timezone": "Asia/Almaty"}],
        "targets": [{"name": "nobody", "url": f"https://127.0.0.1:{closed}/"}],
    }
    data.update(overrides)
    return data


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "curfew.yaml", {})
    try:
        yield d
    finally:
        await d.kill()


class Outage:
    """Makes the test database unavailable and available again: a relay that refuses (for
    PostgreSQL) or a long exclusive transaction (for SQLite, where nothing can refuse)."""

    def __init__(self, database_url: str) -> None:
        self.url = make_url(database_url)
        self.relay: Relay | None = None
        self.lock: sqlite3.Connection | None = None
        self.served = database_url
        if self.url.get_backend_name() == "postgresql":
            self.relay = Relay(self.url.host or "127.0.0.1", self.url.port or 5432)
            self.served = self.url.set(host="127.0.0.1", port=self.relay.port).render_as_string(
                hide_password=False
            )

    async def begin(self) -> None:
        if self.relay is not None:
            await self.relay.cut()
            return
        assert self.url.database is not None
        Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self.lock = sqlite3.connect(self.url.database, timeout=10, isolation_level=None)
        self.lock.execute("BEGIN EXCLUSIVE")

    async def end(self) -> None:
        if self.relay is not None:
            await self.relay.restore()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None


def failures(samples: dict[Any, float], task: str) -> float:
    return metric(samples, "curfew_background_task_failures_total", task=task) or 0


def no_traceback(d: Daemon) -> None:
    assert not any("Traceback" in line for line in d.lines), "\n".join(d.lines[-40:])


async def stop_within(d: Daemon, bound: float) -> int:
    started = time.monotonic()
    code = await d.stop(signal.SIGTERM, timeout=bound + 30)
    took = time.monotonic() - started
    assert took < bound, f"SIGTERM took {took:.1f}s (bound {bound:.0f}s)"
    return code


async def stored(database_url: str) -> int:
    rows = await query(database_url, "SELECT count(*), count(DISTINCT uid) FROM measurements")
    count, distinct = rows[0]
    assert count == distinct
    return int(count)


async def test_database_down_at_start_the_tasks_fail_are_counted_and_recover_then_sigterm_flushes(
    daemon: Daemon, tmp_path: Path, database_url: str
) -> None:
    outage = Outage(database_url)
    await outage.begin()
    try:
        daemon.write(offline_config(tmp_path, outage.served, retention_days=1))
        await daemon.start(ready_timeout=STARTUP_BOUND + SLACK)

        async def counted() -> bool:
            samples = await daemon.scrape()
            return all(failures(samples, task) >= 2 for task in ("migration", "inventory", "retention"))

        await daemon.wait_for(counted, 60, "failures of migration, inventory and retention to be counted")
        await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 3, 30, "probing to go on")
        assert (metric(await daemon.scrape(), "curfew_spooled_measurements") or 0) > 0
    finally:
        await outage.end()
    for task in ("migration", "inventory", "retention"):
        await daemon.wait_for(
            lambda task=task: daemon.seen(f"event=background-task-recovered task={task} "), 60, task
        )
        # Retried several times, logged once (the reason did not change).
        failed = [line for line in daemon.lines if f"event=background-task-failed task={task} " in line]
        assert len(failed) == 1, failed
    assert await stop_within(daemon, GRACE + CLOSE_BUDGET + SLACK) == 0
    assert daemon.seen("event=stopped ")
    no_traceback(daemon)
    # Every measurement made, the last ones during the drain included, is in the database.
    assert await stored(database_url) == len(daemon.measurement_lines())
    rows = await query(database_url, "SELECT name, active FROM vantages")
    assert [(name, bool(active)) for name, active in rows] == [("here", True)]


async def test_database_lost_later_sigterm_exits_0_and_the_journal_brings_every_row_back(
    daemon: Daemon, tmp_path: Path, database_url: str
) -> None:
    outage = Outage(database_url)
    if outage.relay is not None:
        await outage.relay.restore()
    config = offline_config(tmp_path, outage.served, retention_days=1)
    daemon.write(config)
    await daemon.start()
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 2, 30, "some measurements")
    await outage.begin()
    try:
        # The inventory sync that a reload starts now fails: counted, logged, retried.
        daemon.send(signal.SIGHUP)

        async def inventory_failed() -> bool:
            return failures(await daemon.scrape(), "inventory") >= 1

        await daemon.wait_for(inventory_failed, 60, "the inventory sync to fail")
        assert daemon.seen("event=background-task-failed task=inventory ")
        code = await stop_within(daemon, GRACE + CLOSE_BUDGET + SLACK)
    finally:
        await outage.end()
    assert code == 0
    assert daemon.seen("event=stopped ")
    no_traceback(daemon)
    made = len(daemon.measurement_lines())

    # The next start writes what the journal kept.
    second = Daemon(daemon.config_path, config)
    try:
        await second.start()
        await second.wait_for(lambda: len(second.measurement_lines()) >= 1, 30, "probing to resume")
        assert await second.stop() == 0
    finally:
        await second.kill()
        if outage.relay is not None:
            await outage.relay.cut()
    assert await stored(database_url) == made + len(second.measurement_lines())


async def test_a_database_that_hangs_mid_run_does_not_hold_the_stop_and_loses_nothing(
    daemon: Daemon, tmp_path: Path, database_url: str
) -> None:
    outage = Outage(database_url)
    if outage.relay is None:
        pytest.skip("a server that hangs mid-run needs a network database")
    await outage.relay.restore()
    try:
        daemon.write(offline_config(tmp_path, outage.served))
        await daemon.start()
        await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 2, 30, "some measurements")
        await outage.relay.freeze()  # open connections and new ones alike: no answer, ever
        made = len(daemon.measurement_lines())
        await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= made + 3, 30, "probing to go on")
        code = await stop_within(daemon, GRACE + CLOSE_BUDGET + EXIT_BOUND + SLACK)
    finally:
        await outage.relay.cut()
    assert code == 0
    stopped = next(line for line in daemon.lines if "event=stopped " in line)
    assert "spooled=0" not in stopped, stopped  # the hung database took nothing after the freeze
    no_traceback(daemon)
    made = len(daemon.measurement_lines())

    # What the hung database did not take was journaled: the next start writes it.
    second = Daemon(daemon.config_path, offline_config(tmp_path, database_url))
    try:
        await second.start()
        await second.wait_for(lambda: len(second.measurement_lines()) >= 1, 30, "probing to resume")
        assert await second.stop() == 0
    finally:
        await second.kill()
    assert await stored(database_url) == made + len(second.measurement_lines())


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A PostgreSQL port that completes TCP handshakes (the kernel's backlog) and never says a
    word: a database host that hangs rather than refuses."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


async def test_a_black_holed_database_neither_holds_ready_nor_the_stop(
    daemon: Daemon, tmp_path: Path, black_hole: int
) -> None:
    database = f"postgresql://curfew:secret@127.0.0.1:{black_hole}/curfew"
    daemon.write(offline_config(tmp_path, database, retention_days=1))
    started = time.monotonic()
    await daemon.start(ready_timeout=STARTUP_BOUND + SLACK)
    ready_after = time.monotonic() - started
    assert ready_after < STARTUP_BOUND + SLACK
    # Not restored: cut at STARTUP_BOUND, or sooner by the store's connect timeout (the
    # migration times out and the restore is told the database is unavailable).
    assert daemon.seen("event=episodes-not-restored reason=")
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 2, 30, "probing")
    assert await stop_within(daemon, GRACE + CLOSE_BUDGET + EXIT_BOUND + SLACK) == 0
    assert daemon.seen("event=stopped ")
    no_traceback(daemon)
    stopped = next(line for line in daemon.lines if "event=stopped " in line)
    # Nothing reached the database; every measurement is in the journal for the next start.
    assert f"spooled={len(daemon.measurement_lines())}" in stopped


async def _signal_handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGHUP (bit 0 of SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGHUP - 1)))


async def test_a_sighup_while_starting_is_a_reload_not_a_death(daemon: Daemon, tmp_path: Path) -> None:
    daemon.write(offline_config(tmp_path, f"sqlite:///{tmp_path / 'db' / 'curfew.db'}"))
    spawned = time.monotonic()
    await daemon.spawn()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    await daemon.wait_for(lambda: _signal_handlers_installed(pid), 10, "SIGHUP to be caught")
    caught_after = time.monotonic() - spawned
    daemon.send(signal.SIGHUP)  # before READY, while the daemon imports its libraries
    await daemon.wait_for(lambda: daemon.seen("event=ready"), 30, "ready")
    await daemon.wait_for(lambda: daemon.seen("event=reloaded"), 10, "the early SIGHUP's reload")
    assert await daemon.stop() == 0
    no_traceback(daemon)
    print(f"SIGHUP caught {caught_after:.2f}s after spawn")
