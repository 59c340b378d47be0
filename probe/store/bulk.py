"""The hot path: batches of measurements handed to the driver as pre-built tuples.

SQLAlchemy's executemany processes every parameter of every row (type checks, JSON hooks,
datetime binds): that was ~50 us of the ~60 us a row cost on SQLite. Here the rows from
`mapping.result_row` already hold what the driver wants, and a batch is one transaction of its
own with ``INSERT ... ON CONFLICT (uid) DO NOTHING``, so a replay is harmless. Only the rows
actually inserted are added to `hourly_counts`, in the same transaction: a replayed row is not
counted twice.

- SQLite: `sqlite_bulk.SqliteInserter`, a thread and connection of its own (why: see there).
- PostgreSQL: `PostgresqlInserter`, one INSERT ... SELECT FROM unnest(column arrays) through
  asyncpg, returning what `rollup` counts of each inserted row.

SQLAlchemy keeps the schema, the migrations, the connection pool and every other statement.
Exceptions are the drivers' own (sqlite3, asyncpg); `is_bad_data` says which of them mean the
rows, not the database, are at fault.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes are used
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.store import rollup, tables
from probe.store.columns import COLUMNS, STARTED_AT, column_values
from probe.store.mapping import JSON_COLUMNS, Row


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


def postgresql_started_at(value: datetime) -> datetime:
    """Aware, in UTC (a naive time is taken as UTC, as `tables.UTCDateTime` does)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


_JSON_AT: Final = tuple(COLUMNS.index(c) for c in JSON_COLUMNS)


def _tuples(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    out = []
    for row in rows:
        values = list(column_values(row))
        values[STARTED_AT] = postgresql_started_at(values[STARTED_AT])
        for i in _JSON_AT:  # asyncpg encodes json from str
            values[i] = values[i].decode()
        out.append(tuple(values))
    return out


class Inserter(Protocol):
    """Writes batches of measurement rows; one per `Store`."""

    async def insert(self, rows: Sequence[Row]) -> int:
        """Insert `rows` and add them to `hourly_counts`, in one transaction of its own,
        skipping uids already present. Returns how many rows were inserted. Raises the
        driver's exception on failure."""
        ...

    async def close(self) -> None: ...


def inserter(engine: AsyncEngine) -> Inserter:
    """The hot path for `engine`'s database."""
    if engine.dialect.name == "sqlite":
        from probe.store.sqlite_bulk import SqliteInserter

        return SqliteInserter(engine.url.database or "")
    return PostgresqlInserter(engine)


class PostgresqlInserter:
    """A batch is one INSERT ... SELECT FROM unnest(column arrays) through asyncpg (one
    statement that can return rows, where executemany returns none), then the upsert of the
    hourly counts of what it returned, in one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        async with self._engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            columns = [list(c) for c in zip(*_tuples(rows), strict=True)]
            async with driver.transaction():
                inserted = await driver.fetch(POSTGRESQL_INSERT, *columns)
                if counts := rollup.increments(tuple(r) for r in inserted):
                    await driver.executemany(rollup.POSTGRESQL_UPSERT, rollup.upsert_params(counts))
        return len(inserted)

    async def close(self) -> None:
        pass


_BAD_DATA: Final = (
    sqlite3.IntegrityError,  # NOT NULL, CHECK
    sqlite3.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,  # the server's class 22: invalid JSON, a value too long
    asyncpg.exceptions._base.DataError,  # asyncpg could not encode a value
)


_BINDING: Final = ("Error binding parameter", "type is not supported", "is not supported")


def is_bad_data(exc: BaseException | None) -> bool:
    """True when retrying the same rows cannot help: the database refuses them, not the
    connection. A value the driver cannot bind (a list, a dict, an int past 64 bits) is the
    rows' fault too: TypeError, OverflowError, and sqlite3's ProgrammingError or
    InterfaceError about binding (the others, such as a closed connection, are not)."""
    if isinstance(exc, (*_BAD_DATA, TypeError, OverflowError)):
        return True
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return any(words in str(exc) for words in _BINDING)
    return False
