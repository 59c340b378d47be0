"""The hot path: batches of measurements handed to the driver as pre-built tuples.

SQLAlchemy's executemany processes every parameter of every row (type checks, JSON hooks,
datetime binds): that was ~50 us of the ~60 us a row cost on SQLite. Here the rows from
`mapping.result_row` already hold what the driver wants, so one batch is one `executemany` in
one transaction: sqlite3's, in aiosqlite's thread, or asyncpg's prepared statement, pipelined.
The statement is still ``INSERT ... ON CONFLICT (uid) DO NOTHING``, so a replay is harmless.
It returns what `rollup` counts of each row it inserted, and the batch's hourly counts are
added to `hourly_counts` in the same transaction: a replayed row was not inserted, so it is
not counted twice. On PostgreSQL the batch is one INSERT ... SELECT FROM unnest(column arrays)
(one statement that can return rows, where executemany returns none).
SQLAlchemy keeps the schema, the migrations, the connection pool and every other statement.

Exceptions are the drivers' own (sqlite3, asyncpg); `is_bad_data` says which of them mean the
rows, not the database, are at fault.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes are used
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.store import rollup, tables
from probe.store.mapping import Row

COLUMNS: Final = tuple(c.name for c in tables.measurements.columns if c.name != "id")
_STARTED_AT: Final = COLUMNS.index("started_at")


SQLITE_ROWS_PER_STATEMENT: Final = 999 // len(COLUMNS)
"""Rows per multi-row INSERT on SQLite: within the 999 variables any build allows. One
statement is one `sqlite3_step`, during which the GIL is released: row by row, the writer's
thread would wait for the GIL once per row while the event loop encodes the next rows."""


def sqlite_insert(rows: int) -> str:
    """The INSERT for `rows` rows of ``?`` placeholders (cached by sqlite3 per text)."""
    one = f"({', '.join(['?'] * len(COLUMNS))})"
    return _statement_rows(", ".join([one] * rows))


def _statement_rows(values: str) -> str:
    return (
        f"INSERT INTO measurements ({', '.join(COLUMNS)}) VALUES {values} "
        f"ON CONFLICT (uid) DO NOTHING RETURNING {rollup.RETURNING}"
    )


def _array_type(column: str) -> str:
    # Without a length: a cast to varchar(32)[] would cut a long value silently; varchar[] lets
    # the column refuse it, as a plain INSERT does.
    dialect: Any = postgresql.dialect  # untyped
    compiled = tables.measurements.c[column].type.compile(dialect=dialect())
    return re.sub(r"\(\d+\)", "", compiled) + "[]"


POSTGRESQL_INSERT: Final = (
    f"INSERT INTO measurements ({', '.join(COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i}::{_array_type(c)}' for i, c in enumerate(COLUMNS, 1))}) "
    f"ON CONFLICT (uid) DO NOTHING RETURNING {rollup.RETURNING}"
)


def sqlite_started_at(value: datetime) -> str:
    """What `tables.UTCDateTime` stores on SQLite: naive UTC text with microseconds.

    >>> sqlite_started_at(datetime(2019, 6, 9, 5, 0, 1, 250_000, tzinfo=UTC))
    '2019-06-09 05:00:01.250000'
    """
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def postgresql_started_at(value: datetime) -> datetime:
    """Aware, in UTC (a naive time is taken as UTC, as `tables.UTCDateTime` does)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _tuples(rows: Sequence[Row], started_at: Callable[[datetime], Any]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        # .get: a column newer than the row (a spool line written before a migration added
        # it) goes in as NULL, as SQLAlchemy's insert would leave it.
        values: list[Any] = [row.get(c) for c in COLUMNS]
        values[_STARTED_AT] = started_at(row["started_at"])
        out.append(tuple(values))
    return out


async def insert_measurements(conn: AsyncConnection, rows: Sequence[Row]) -> int:
    """Insert `rows` (from `mapping.result_row` or `mapping.line_row`) and add them to
    `hourly_counts`, in one transaction of its own, skipping uids already present. Returns how
    many rows were inserted. Raises the driver's exception on failure."""
    if not rows:
        return 0
    driver: Any = (await conn.get_raw_connection()).driver_connection
    inserted: list[Any] = []
    if conn.dialect.name == "sqlite":
        params = _tuples(rows, sqlite_started_at)
        step = SQLITE_ROWS_PER_STATEMENT
        try:
            for start in range(0, len(params), step):
                chunk = params[start : start + step]
                sql = sqlite_insert(len(chunk))
                inserted += await driver.execute_fetchall(sql, [v for row in chunk for v in row])
            if counts := rollup.increments(inserted):
                await driver.executemany(rollup.SQLITE_UPSERT, rollup.upsert_params(counts))
            await driver.commit()
        except BaseException:
            await driver.rollback()
            raise
    else:
        columns = [list(c) for c in zip(*_tuples(rows, postgresql_started_at), strict=True)]
        async with driver.transaction():
            inserted = await driver.fetch(POSTGRESQL_INSERT, *columns)
            if counts := rollup.increments(tuple(r) for r in inserted):
                await driver.executemany(rollup.POSTGRESQL_UPSERT, rollup.upsert_params(counts))
    return len(inserted)


_BAD_DATA: Final = (
    sqlite3.IntegrityError,  # NOT NULL, CHECK
    sqlite3.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,  # the server's class 22: invalid JSON, a value too long
    asyncpg.exceptions._base.DataError,  # asyncpg could not encode a value
)


def is_bad_data(exc: BaseException) -> bool:
    """True when retrying the same rows cannot help: the database refuses them, not the
    connection."""
    return isinstance(exc, _BAD_DATA)
