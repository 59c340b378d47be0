"""SQLite's hot path: batches written by one thread on its own connection, checkpoints beside it.

Why not aiosqlite (which SQLAlchemy's async SQLite uses for everything else): each of its calls
is a hop from the event loop to its thread and back, and each hop waits for the GIL, which the
event loop holds while it encodes the next measurements. A batch was five hops (BEGIN, INSERT,
the rollup, COMMIT, ...). Here a batch is one call into a dedicated thread, which takes the GIL
to bind the values and releases it for each multi-row INSERT (one `sqlite3_step` for up to 256
rows), so SQLite writes on one core while Python encodes on the other.

Checkpoints (copying the WAL back into the database file, and the fsyncs that go with them)
were a third of the writer's time when they ran inside its COMMIT (SQLite's auto-checkpoint).
This connection's auto-checkpoint is set far out as a backstop, and after each commit a
PASSIVE checkpoint runs on a second thread and connection, if one is not already running; it
never blocks the writer and the writer never waits for it (SQLite's "checkpoint in a separate
thread", https://www.sqlite.org/wal.html#application_initiated_checkpoints).

The batch: ``BEGIN IMMEDIATE`` (the write lock first, so no other writer's rows can fall in
between), the highest id, the multi-row ``INSERT ... ON CONFLICT (uid) DO NOTHING``, then
`rollup.sqlite_add_inserted()` counts the rows above that id (only those this batch inserted;
a replayed uid is skipped, so it is not counted twice) into `hourly_counts`, and COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

from probe.store import columns, rollup
from probe.store.engine import sqlite_pragmas
from probe.store.events import event
from probe.store.mapping import JSON_COLUMNS, Row

log = logging.getLogger(__name__)

WAL_BACKSTOP_PAGES: Final = 16_384
"""The writer's own auto-checkpoint (64 MiB of 4 KiB pages): reached only if the checkpoint
thread falls behind."""
JOURNAL_SIZE_LIMIT: Final = 32 * 1024 * 1024
"""Bytes the WAL file is cut back to after a checkpoint has emptied it."""


_TEXT: Final = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


def started_at_text(value: datetime) -> str:
    """What `tables.UTCDateTime` stores on SQLite: naive UTC text with microseconds.

    >>> started_at_text(datetime(2019, 6, 9, 5, 0, 1, 250_000, tzinfo=UTC))
    '2019-06-09 05:00:01.250000'
    >>> from datetime import timedelta, timezone
    >>> started_at_text(datetime(2019, 6, 9, 11, 0, 1, tzinfo=timezone(timedelta(hours=6))))
    '2019-06-09 05:00:01.000000'
    >>> started_at_text(datetime(2019, 6, 9, 5, 0, 1))  # naive: taken as UTC
    '2019-06-09 05:00:01.000000'
    """
    if value.tzinfo is not UTC:  # the daemon's own times are UTC already: 1.0 us instead of 2.0
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    v = value
    return _TEXT % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def statement_sizes(rows: int, largest: int) -> list[int]:
    """Rows per INSERT for a batch of `rows`: as many `largest` as fit, the rest in powers of
    two. A batch's size is whatever the timer left (1-500 rows), and sqlite3 caches a compiled
    statement per text (a 500-row one is ~1 MB): powers of two keep that to a few shapes.

    >>> statement_sizes(500, 256)
    [256, 128, 64, 32, 16, 4]
    >>> statement_sizes(3, 256)
    [2, 1]
    """
    sizes = [largest] * (rows // largest)
    rest = rows % largest
    bit = largest
    while rest:
        bit //= 2
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
    return sizes


def largest_statement(columns: int) -> int:
    """The largest power of two of rows, at most 256, within SQLite's variable limit (32,766
    variables since 3.32, 999 before)."""
    probe = sqlite3.connect(":memory:")
    try:
        limit = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // columns
    finally:
        probe.close()
    size = 256
    while size > max(1, limit):
        size //= 2
    return size


@functools.cache
def insert_statement(rows: int) -> str:
    """The INSERT for `rows` rows of ``?`` placeholders (sqlite3 caches it compiled by its text;
    `statement_sizes` keeps the sizes to a few)."""
    # The JSON columns arrive as UTF-8 bytes: SQLite takes them as text, no copy in Python.
    one = "(" + ", ".join("CAST(? AS TEXT)" if c in JSON_COLUMNS else "?" for c in columns.COLUMNS) + ")"
    return (
        f"INSERT INTO measurements ({', '.join(columns.COLUMNS)}) VALUES {', '.join([one] * rows)} "
        "ON CONFLICT (uid) DO NOTHING"
    )


def _flat_values(rows: Sequence[Row]) -> list[Any]:
    """The parameters of a multi-row INSERT: every row's values, started_at as SQLite text."""
    flat: list[Any] = []
    width, at = len(columns.COLUMNS), columns.STARTED_AT
    for row in rows:
        flat.extend(columns.column_values(row))
        flat[-width + at] = started_at_text(flat[-width + at])
    return flat


class SqliteInserter:
    """Writes batches of rows into the SQLite database at `path`; one per `Store`."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._largest = largest_statement(len(columns.COLUMNS))
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="curfew-sqlite-writer")
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="curfew-sqlite-checkpoint")
        self._db: sqlite3.Connection | None = None  # the writer thread's
        self._checkpoint_db: sqlite3.Connection | None = None  # the checkpoint thread's
        self._checkpoint: Future[None] | None = None

    async def insert(self, rows: Sequence[Row]) -> int:
        """Insert `rows` and count them into `hourly_counts`, in one transaction; returns how
        many were inserted (uids already present are skipped). Raises sqlite3's exceptions."""
        if not rows:
            return 0
        count = await asyncio.get_running_loop().run_in_executor(self._writer, self._insert, rows)
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = self._checkpointer.submit(self._run_checkpoint)
        return count

    async def close(self) -> None:
        """Wait for the running checkpoint, close both connections and stop the threads."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpointer, self._close_checkpoint_db)
        await loop.run_in_executor(self._writer, self._close_db)
        self._checkpointer.shutdown()
        self._writer.shutdown()

    # -- in the writer thread ------------------------------------------------------------------

    def _insert(self, rows: Sequence[Row]) -> int:
        db = self._db or self._open()
        try:
            db.execute("BEGIN IMMEDIATE")
            ((before,),) = db.execute("SELECT coalesce(max(id), 0) FROM measurements").fetchall()
            changes = db.total_changes
            start = 0
            for size in statement_sizes(len(rows), self._largest):
                chunk = rows[start : start + size]
                db.execute(insert_statement(size), _flat_values(chunk))
                start += size
            count = db.total_changes - changes
            if count:
                db.execute(rollup.sqlite_add_inserted(), (before,))
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            if not isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
                self._close_db()  # the next attempt starts on a fresh connection
            raise
        return count

    def _open(self) -> sqlite3.Connection:
        db = self._connect()
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        self._db = db
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            sqlite_pragmas(db)
        except BaseException:
            db.close()
            raise
        return db

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- in the checkpoint thread --------------------------------------------------------------

    def _run_checkpoint(self) -> None:
        try:
            if self._checkpoint_db is None:
                self._checkpoint_db = self._connect()
            self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # Harmless: the next commit starts another, and the writer's backstop remains.
            log.debug(event("sqlite-checkpoint-failed", reason=exc))
            self._close_checkpoint_db()

    def _close_checkpoint_db(self) -> None:
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
            self._checkpoint_db = None
