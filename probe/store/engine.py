"""Database URLs and engines: what users write, what the async drivers need.

Users write ``sqlite:///path`` and ``postgresql://user:pass@host/db``; the async engine needs
``sqlite+aiosqlite`` and ``postgresql+asyncpg``. SQLite connections get WAL, synchronous=NORMAL
and a busy timeout, so the daemon's writer and a reader (``sqlite3`` in a shell) coexist.

Nothing waits on a database without a bound: a PostgreSQL server that does not answer (a
black-holed address, a hung server, a full accept queue) fails a connect after
`CONNECT_TIMEOUT` seconds, a statement after the engine's `command_timeout` (the daemon's
store sets one; reports and migrations may legitimately run long and do not), and a pooled
connection is waited for `CONNECT_TIMEOUT` at most. A locked SQLite database waits
`SQLITE_BUSY_TIMEOUT_MS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT = 5.0
"""Seconds for a connection to a PostgreSQL server to be up (TCP, TLS, authentication);
asyncpg's own default is 60, which held the daemon's start for minutes (issue 12)."""
COMMAND_TIMEOUT = 60.0
"""Seconds one statement of the daemon's store may take (a batch of 500 rows takes ~50 ms)."""
SQLITE_PAGE_SIZE = 16384
"""Bytes a page, for databases created from now on (an existing one keeps its own until a
VACUUM). A measurement row is ~4.5 KB: with SQLite's default 4 KiB pages every row spilled
into an overflow page; 16 KiB pages hold it whole, and the writer spent 28 us on a row instead
of 36 (INSERT 18 instead of 22.5, COMMIT 4.6 instead of 7.4; docs/benchmarks.md)."""

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


class StoreError(Exception):
    """The database could not do what was asked (unreachable, refused, bad URL)."""


def json_serializer(value: Any) -> str:
    """JSON for a JSON column; `bytes` are JSON already (`mapping.encode` encodes each row's
    observations once), decoded as they are."""
    return value.decode() if isinstance(value, bytes) else json.dumps(value, separators=(",", ":"))


def async_url(url: str | URL) -> URL:
    """The URL with the async driver for its backend.

    >>> async_url("sqlite:///data/curfew.db").drivername
    'sqlite+aiosqlite'
    >>> async_url("postgresql://u:p@db/curfew").drivername
    'postgresql+asyncpg'
    """
    parsed = make_url(url)
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in _ASYNC_DRIVERS:
        raise StoreError(f"unsupported database {backend!r}: expected sqlite:/// or postgresql://")
    return parsed.set(drivername=_ASYNC_DRIVERS[backend])


def backend(url: str | URL) -> str:
    """The backend's name: sqlite or postgresql."""
    return async_url(url).get_backend_name()


def _make_sqlite_dir(target: URL) -> None:
    database = target.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(
    url: str | URL, *, connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float | None = None
) -> AsyncEngine:
    """An async engine for `url`; creates the SQLite file's directory if it is missing.
    On PostgreSQL a connection attempt gives up after `connect_timeout` seconds and, with
    `command_timeout`, a statement after that many."""
    target = async_url(url)
    options: dict[str, Any] = {"json_serializer": json_serializer}
    if target.get_backend_name() == "sqlite":
        _make_sqlite_dir(target)
    else:
        # Timestamps are written and read in UTC whatever the server's default zone.
        connect_args: dict[str, Any] = {"server_settings": {"timezone": "UTC"}, "timeout": connect_timeout}
        if command_timeout is not None:
            connect_args["command_timeout"] = command_timeout
        options["connect_args"] = connect_args
        options["pool_pre_ping"] = True
        options["pool_timeout"] = connect_timeout
    engine = create_async_engine(target, **options)
    if target.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def create_sqlite_engine(url: str | URL) -> Engine:
    """A blocking engine on the stdlib driver, for migrations: SQLite is local, so the async
    driver's worker thread buys nothing there (and outlives a failed connect)."""
    target = async_url(url).set(drivername="sqlite")
    _make_sqlite_dir(target)
    engine = create_sync_engine(target, json_serializer=json_serializer)
    event.listen(engine, "connect", sqlite_pragmas)
    return engine


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """WAL, synchronous=NORMAL, the busy timeout and foreign keys, on every SQLite connection;
    16 KiB pages if the database is new (before WAL: its header is written then)."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
