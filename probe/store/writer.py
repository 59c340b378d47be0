"""`Store`: the daemon's only way to the database, built so that no measurement is lost.

Journal first: `submit()` appends the row to the spool (see spool.py) and returns; the rows
submitted during one turn of the event loop go to disk together right after it. A background
task takes closed spool segments oldest first, writes them in one transaction (INSERT ... ON
CONFLICT (uid) DO NOTHING, through the driver: see bulk.py; small segments that piled up go
together, up to `BACKLOG_ROWS`) and deletes the segments only after the commit. While the database is
down the task retries with a bounded backoff and segments pile up on disk, not in memory; when
it is back they go in in submission order. `open()` picks up whatever a previous run (a crash,
kill -9) left in the spool and writes it first. If the schema could not be migrated at open
(the database was unreachable), the writer migrates it before its first write that reaches it.

    store = await Store.open(config.database_url, config.data_dir / "spool")
    store.submit(result)          # never blocks, never raises on database trouble
    ...
    await store.close()           # flush; whatever the database did not take stays spooled
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.config import Config
from probe.episodes.model import EpisodeEvent
from probe.model import Result
from probe.store import blackouts, bulk, migrate, queries
from probe.store.engine import COMMAND_TIMEOUT, CONNECT_TIMEOUT, StoreError, create_engine
from probe.store.errors import database_errors, describe, is_database_error
from probe.store.events import event
from probe.store.mapping import EPISODE, Row, encode, encode_episode, spool_line
from probe.store.spool import Segment, Spool

log = logging.getLogger(__name__)
_UTC = ZoneInfo("UTC")

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
"""Seconds between attempts while the database is unreachable (doubling up to this)."""
OUTAGE_REMINDER = 60.0
"""Seconds between log lines while the database stays down for the same reason."""
BACKLOG_ROWS = 500
"""At most this many rows (whole segments, at least one) in one transaction when segments have
piled up: many small ones (the timer's partial batches during an outage) go in together. Bigger
transactions were slower, not faster: working off a 20,000-row backlog, SQLite 22,227-23,038/s
with 5,000-row transactions against 24,708-24,717/s with 500; PostgreSQL 11,540 against 12,353/s
on a fresh database and 7,712-7,887 against 9,337-9,966/s at 1,000,000 rows, where the server
spent 96-98 us of CPU a row in the big ones and 68-72 in the small (docs/benchmarks.md)."""


def _is_bad_data(exc: BaseException) -> bool:
    """The rows, not the database, are the problem: retrying the same batch cannot help."""
    if isinstance(exc, IntegrityError | DataError) or bulk.is_bad_data(exc):
        return True
    if isinstance(exc, DBAPIError):
        return bulk.is_bad_data(exc.orig)
    return isinstance(exc, StatementError)


class Store:
    """The journal and its writer; create with `await Store.open(...)`."""

    def __init__(
        self,
        engine: AsyncEngine,
        spool: Spool,
        *,
        flush_interval: float,
        upgrade_url: str | None = None,
        schema: Callable[[], Awaitable[None]] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._engine = engine
        self._inserter = bulk.inserter(engine)
        self._spool = spool
        self._flush_interval = flush_interval
        if schema is None and upgrade_url is not None:
            schema = functools.partial(asyncio.to_thread, _upgrade, upgrade_url, connect_timeout)
        self._schema = schema  # set while migrations are still to run: awaited before a write
        self._zones: dict[str, ZoneInfo] = {}  # vantage -> its zone, from sync_inventory
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # set after every write attempt
        self._attempts = 0
        self._write_errors = 0
        self._closing = False
        self._down_since: float | None = None  # loop time of an outage's first failed write
        self._down_reason = ""
        self._down_said_at = 0.0
        self._down_attempts = 0
        self._connect_timeout = connect_timeout  # the migration's too
        self._dispose_timeout = connect_timeout
        self._closed = False
        self._write_scheduled = False
        self._task = asyncio.create_task(self._run(), name="curfew-store-writer")

    @classmethod
    async def open(
        cls,
        url: str,
        spool_dir: Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        migrate: bool = True,
        memory_rows: int = 20_000,
        schema: Callable[[], Awaitable[None]] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> Store:
        """Open the spool in `spool_dir` and start writing to the database at `url`.

        `batch_size` rows go in one transaction; a partial batch waits at most `flush_interval`
        seconds. `migrate` brings the schema to head first; if the database is unreachable
        then, the store opens anyway, and migrates and writes once it is back.
        At most `memory_rows` rows are held in memory; the rest wait on disk.
        `schema`: the caller migrates (the daemon does, under its supervisor, so that a
        database that never answers cannot hold up start-up); awaited before each write until
        it returns, it raises (`StoreError`) while the schema is not ready, and nothing is
        migrated here.
        A PostgreSQL server that does not answer fails a connection attempt (the migration's
        too) after `connect_timeout` seconds and a statement after `command_timeout`: `open`,
        each write attempt, `sync_inventory` and `close` are bounded whatever it does.
        Raises `SpoolLocked` if another process uses `spool_dir`, `StoreError` for a bad URL.
        """
        if batch_size < 1 or flush_interval <= 0:
            raise ValueError("batch_size must be >= 1 and flush_interval > 0")
        engine = create_engine(url, connect_timeout=connect_timeout, command_timeout=command_timeout)
        upgrade_url = None
        if migrate and schema is None:
            try:
                await asyncio.to_thread(_upgrade, url, connect_timeout)
            except StoreError as exc:
                upgrade_url = url
                log.error(event("database-migration-failed", reason=exc, then="spooled until it is back"))
        spool = await asyncio.to_thread(
            Spool, spool_dir, batch_size=batch_size, memory_rows=max(memory_rows, batch_size)
        )
        if spool.pending:
            log.info(event("journal-replay", rows=spool.pending, directory=spool_dir))
        return cls(
            engine,
            spool,
            flush_interval=flush_interval,
            upgrade_url=upgrade_url,
            schema=schema,
            connect_timeout=connect_timeout,
        )

    # -- the daemon's side -------------------------------------------------------------------

    def submit(self, result: Result) -> None:
        """Journal `result` and queue it for the database; returns at once. The journal's file
        has it once the event loop turns (before any other task or callback runs).

        Raises only for a bug (a result that cannot be encoded, a closed store).
        """
        if self._closed:
            raise RuntimeError("submit() on a closed Store")
        row, line = encode(result, self._zones.get(result.measurement.vantage))
        self._journal(row, line)

    def submit_episodes(self, events: Sequence[EpisodeEvent]) -> None:
        """Journal the state each event leaves its episode in, to be written (upserted by its
        identity) in order with the measurements; returns at once, like `submit`."""
        if self._closed:
            raise RuntimeError("submit_episodes() on a closed Store")
        for e in events:
            episode = e.episode
            self._journal(*encode_episode(episode, self._zones.get(episode.vantage) or _UTC))

    def _journal(self, row: Row, line: bytes) -> None:
        was_empty = self._spool.current is None
        if self._spool.append(row, line, self._loop.time()) or was_empty:
            self._wake.set()
        if not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write_journal)

    def _write_journal(self) -> None:
        """The rows submitted during the last turn of the loop, to the spool's file at once."""
        self._write_scheduled = False
        self._spool.write()

    async def flush(self) -> None:
        """Return when everything submitted so far is in the database or, if a write attempt
        fails meanwhile, fsynced in the spool."""
        self._spool.rotate()
        last = self._spool.closed[-1].seq if self._spool.closed else 0
        start = self._attempts
        failed_since = self._write_errors
        while self._spool.closed and self._spool.closed[0].seq <= last and not self._task.done():
            if self._write_errors > failed_since and self._attempts > start and not self._spool.unsynced():
                return
            self._progress.clear()
            self._wake.set()
            await self._progress.wait()

    async def close(self, timeout: float | None = None) -> int:
        """Flush, stop the writer and release the spool; safe to call twice. With `timeout`,
        the flush is given up after that many seconds (what the database has not taken stays
        in the journal), so a stop is bounded whatever the database does.

        Returns how many measurements are lost: neither in the database nor on disk (the
        journal could not be written, and the database did not take them either). They are
        named (uids) in one error line; `lost` says the same afterwards. 0 is the rule.
        """
        if self._closed:
            return self.lost
        self._closing = True
        try:
            if timeout is None:
                await self.flush()
            else:
                try:
                    await asyncio.wait_for(self.flush(), timeout)
                except TimeoutError:
                    log.warning(event("store-flush-cut", after_s=timeout, spooled=self.spooled))
        finally:
            self._closed = True
            self._task.cancel()
            # A write stuck in a driver that does not heed the cancellation is left behind.
            await asyncio.wait({self._task}, timeout=self._dispose_timeout)
            try:
                if self._spool.unjournaled:
                    self._spool.write()
                    await self._rejournal()  # one last try to put them on disk
                self._report_lost()
            finally:
                self._spool.close()
                await self._inserter.close()
                # Closing a connection says goodbye to the server: bounded, for one that
                # stopped answering.
                try:
                    await asyncio.wait_for(self._engine.dispose(), self._dispose_timeout)
                except TimeoutError:
                    log.warning(event("database-close-timeout", seconds=self._dispose_timeout))
        return self.lost

    def _report_lost(self) -> None:
        held = self._spool.not_on_disk()
        lost = [row for row in held if EPISODE not in row]
        episodes = [row[EPISODE] for row in held if EPISODE in row]
        if lost:
            log.error(
                event(
                    "measurements-lost",
                    count=len(lost),
                    reason=self._spool.last_error or "not written",
                    first=lost[0].get("started_at"),
                    last=lost[-1].get("started_at"),
                    uids=",".join(str(row.get("uid")) for row in lost),
                )
            )
        if episodes:  # states of episodes: `curfew analyze --rebuild` finds them again
            names = (f"{e['vantage']}/{e['target'] or '-'}@{e['onset_before']}" for e in episodes)
            log.error(
                event(
                    "episode-states-lost",
                    count=len(episodes),
                    reason=self._spool.last_error or "not written",
                    episodes=",".join(names),
                )
            )

    @property
    def lost(self) -> int:
        """Once `close()` has begun: measurements neither in the database nor on disk (see
        `close`); also when a caller gave up waiting for `close()` to finish."""
        return self._spool.unjournaled if self._closing else 0

    async def sync_inventory(self, config: Config) -> None:
        """Upsert the configured vantages and targets; mark the others inactive.

        Raises `StoreError` if the database cannot be reached.
        """
        self.set_zones(config)
        now = datetime.now(UTC)
        with database_errors("inventory"):
            async with self._engine.begin() as conn:
                await queries.upsert_inventory(conn, config, now)

    def set_zones(self, config: Config) -> None:
        """Take the vantages' zones (each row's local day and hour) from `config`; at once, where
        `sync_inventory` may have to wait for the database."""
        self._zones = {v.name: ZoneInfo(v.timezone) for v in config.vantages}

    async def apply_retention(self, older_than: datetime) -> int:
        """Delete measurements started before `older_than`; returns how many.

        Raises `StoreError` if the database cannot be reached.
        """
        with database_errors("retention"):
            async with self._engine.begin() as conn:
                return await queries.delete_older_than(conn, older_than)

    @property
    def spooled(self) -> int:
        """Measurements on disk in the journal and not yet in the database."""
        return self._spool.pending - self._spool.unjournaled

    @property
    def unjournaled(self) -> int:
        """Measurements held only in memory: their journal write failed (a full disk) and
        neither a retry nor the database has taken them yet. Lost if the process dies."""
        return self._spool.unjournaled

    @property
    def journal_errors(self) -> int:
        """Failed journal writes so far (each retried)."""
        return self._spool.append_errors

    @property
    def journal_skipped(self) -> int:
        """Journal lines read back and not replayed (torn, damaged, not a measurement)."""
        return self._spool.skipped_lines

    @property
    def write_errors(self) -> int:
        """Failed database write attempts so far."""
        return self._write_errors

    # -- the writer task -----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_INITIAL
        while True:
            try:
                segments = self._spool.oldest_run(BACKLOG_ROWS)
                if not segments:
                    await self._wait_for_batch()
                    continue
                ok = await self._write(segments)
                self._attempts += 1
                self._progress.set()
                if ok:
                    backoff = BACKOFF_INITIAL
                    continue
                # The database is down: make sure the spool is durable, then wait and retry.
                await asyncio.to_thread(self._spool.sync)
                await self._rejournal()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: logged, and the writer goes on (it must never stop)
                log.exception(event("store-writer-error"))
                self._write_errors += 1
                self._attempts += 1
            self._progress.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _rejournal(self) -> None:
        """Put rows that only memory holds (their journal write failed) on disk, if it takes
        them now: while the database is down they would otherwise be lost to a crash."""
        for seg in self._spool.unjournaled_segments():
            error = await asyncio.to_thread(self._spool.write_out, seg)
            self._spool.written_out(seg, error)
            if error is not None:
                return

    async def _wait_for_batch(self) -> None:
        """Until the current segment is full, or its first row has waited `flush_interval`."""
        self._wake.clear()
        cur = self._spool.current
        if cur is None:
            await self._wake.wait()
            return
        delay = cur.opened_at + self._flush_interval - self._loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if self._spool.current is cur and cur.opened_at + self._flush_interval > self._loop.time():
                return  # woken early, but not for this segment
        if self._spool.current is cur:
            self._spool.rotate()

    async def _write(self, segments: list[Segment]) -> bool:
        """Write `segments` in one transaction. False if the database could not take them."""
        rows: list[Row] = []
        try:
            if self._schema is not None:
                await self._schema()
                log.info(event("database-migrated", spooled=self._spool.pending))
                self._schema = None
            for seg in segments:
                rows += seg.rows if seg.rows is not None else await asyncio.to_thread(self._spool.rows, seg)
            await self._insert(rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _is_bad_data(exc):
                with contextlib.suppress(Exception):
                    for seg in segments:
                        await self._write_one_by_one(seg)
                    self._write_resumed()
                    return True
            self._write_failed(exc)
            return False
        self._write_resumed()
        for seg in segments:
            self._spool.done(seg)
        return True

    async def _insert(self, rows: list[Row]) -> None:
        """Measurements through the hot path, then episodes upserted in their journal order."""
        measurements = [row for row in rows if EPISODE not in row]
        if measurements:
            await self._inserter.insert(measurements)
        episodes = [row[EPISODE] for row in rows if EPISODE in row]
        if episodes:
            async with self._engine.begin() as conn:
                await blackouts.save_rows(conn, episodes)

    def _write_failed(self, exc: Exception) -> None:
        """Count a failed attempt; say so when an outage starts, when its reason changes, and
        once a minute while it lasts (not at every retry)."""
        self._write_errors += 1
        now = self._loop.time()
        reason = describe(exc)
        if not is_database_error(exc) and not isinstance(exc, StoreError):
            log.error(event("store-write-error", reason=reason), exc_info=exc)  # a bug: its traceback
        if self._down_since is None:
            self._down_since, self._down_attempts = now, 0
        elif reason == self._down_reason and now - self._down_said_at < OUTAGE_REMINDER:
            self._down_attempts += 1
            return
        self._down_attempts += 1
        self._down_reason, self._down_said_at = reason, now
        log.warning(
            event(
                "database-write-failed",
                reason=reason,
                down_s=now - self._down_since,
                spooled=self.spooled,
                unjournaled=self.unjournaled,
            )
        )

    def _write_resumed(self) -> None:
        """After an outage: one line with how long it lasted and how many rows were behind."""
        if self._down_since is None:
            return
        log.warning(
            event(
                "database-write-resumed",
                down_s=self._loop.time() - self._down_since,
                behind=self._spool.pending,
                failed_attempts=self._down_attempts,
            )
        )
        self._down_since = None
        self._down_reason = ""

    async def _write_one_by_one(self, seg: Segment) -> None:
        """A batch the database refused: write what it takes, set the rest aside on disk."""
        rows = seg.rows if seg.rows is not None else await asyncio.to_thread(self._spool.rows, seg)
        rejected = []
        for row in rows:
            try:
                await self._insert([row])
            except Exception as exc:
                if not _is_bad_data(exc):
                    raise
                rejected.append(row)
                log.error(event("measurement-refused", uid=row.get("uid"), reason=describe(exc)))
        if rejected:
            path = await asyncio.to_thread(
                self._spool.quarantine, seg, rejected, [spool_line(r) for r in rejected]
            )
            log.error(event("measurements-rejected", count=len(rejected), kept=path))
        self._spool.done(seg)


def _upgrade(url: str, connect_timeout: float | None = None) -> None:
    with database_errors("migration"):
        migrate.upgrade(url, connect_timeout=connect_timeout)
