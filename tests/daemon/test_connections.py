"""What a running daemon holds open on its database: the store's connections, nothing more.

The episode monitor is seeded from the database at start on an engine of its own; that
engine is released once the seed is done. Kept until stop, it was one more idle connection
per daemon for its whole life (and, on SQLite, a thread), on a PostgreSQL that several vantage
points share.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.daemon.harness import Daemon, query
from tests.daemon.test_failures import offline_config

STORE_CONNECTIONS = {"sqlite": 3, "postgresql": 1}
"""The store's own, once started (no retention configured): for SQLite its writer, its
checkpointer and its engine's one pooled connection; for PostgreSQL one pooled connection."""


def sqlite_connections(pid: int, path: Path) -> int:
    """Connections process `pid` has open on the SQLite file `path` (one descriptor each)."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                count += 1
        except OSError:
            continue  # closed meanwhile
    return count


async def test_after_start_the_daemon_holds_only_the_stores_connections(
    tmp_path: Path, database_url: str
) -> None:
    daemon = Daemon(tmp_path / "curfew.yaml", offline_config(tmp_path, database_url))
    try:
        await daemon.start()
        await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 2, 30, "some measurements")
        assert daemon.proc is not None
        backend = make_url(database_url).get_backend_name()
        if backend == "sqlite":
            database = make_url(database_url).database
            assert database is not None
            held = sqlite_connections(daemon.proc.pid, Path(database))
        else:
            rows = await query(
                database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()",
            )
            held = rows[0][0]
        assert held <= STORE_CONNECTIONS[backend], held
        assert await daemon.stop() == 0
    finally:
        await daemon.kill()
