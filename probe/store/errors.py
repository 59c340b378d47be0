"""Database errors -> the store's own: the one place that knows the drivers' exceptions.

Like httpx's ``map_httpcore_exceptions``: code that talks to a database wraps the call in
`database_errors("what it was doing")`, and whatever SQLAlchemy, sqlite3 or asyncpg raise for
an unreachable, refusing, timed-out or broken database comes out as a `StoreError` with one
line saying what failed and why. Anything else (a bug) passes through untouched. `describe`
gives that line for an exception already caught (the writer's log lines).

    with database_errors("inventory"):
        async with engine.begin() as conn:
            ...

`is_bad_data` (bulk.py) says the other thing a caller needs: the rows, not the database, are
at fault.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import exc as sa

from probe.store.engine import StoreError

DATABASE_ERRORS: Final = (
    sa.DBAPIError,  # a driver's error, wrapped: refused, unknown database, bad password, SQL
    sa.TimeoutError,  # no pooled connection in time
    sa.ArgumentError,  # a URL SQLAlchemy cannot use
    sa.NoSuchModuleError,
    sqlite3.Error,  # the SQLite hot path's own connection (sqlite_bulk.py)
    OSError,  # connect: refused, unreachable, no such host; a SQLite file that cannot be made
    TimeoutError,  # connect_timeout / command_timeout
)
"""What a database call raises when the database (not our code) is the trouble; and every
exception of asyncpg's (the PostgreSQL hot path's own statements, bulk.py), recognised by its
module so that `curfew report` does not import the driver to read a SQLite file."""


def _asyncpg(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("asyncpg")


def describe(exc: BaseException) -> str:
    """One line for a database error: the driver's own message, not SQLAlchemy's wrapping
    (which repeats the statement and its parameters: rows of measurements).

    >>> describe(TimeoutError())
    'timed out'
    >>> describe(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"))
    "[Errno 111] Connect call failed ('127.0.0.1', 1)"
    """
    if isinstance(exc, StoreError):
        return str(exc)
    cause: BaseException = exc
    if isinstance(exc, sa.DBAPIError) and exc.orig is not None:
        cause = exc.orig
    if isinstance(cause, TimeoutError):
        return "timed out"
    text = " ".join(str(cause).split())
    return text[:300] or type(cause).__name__


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_ERRORS) or _asyncpg(exc)


@contextmanager
def database_errors(what: str) -> Iterator[None]:
    """Raise `StoreError("<what>: <describe(exc)>")` for a database error inside the block;
    anything else (a bug, a cancellation) goes through as it is."""
    try:
        yield
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise StoreError(f"{what}: {describe(exc)}") from exc
