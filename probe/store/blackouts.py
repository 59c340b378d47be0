"""Blackout episodes in the database: the `blackouts` table kept up to date as episodes open,
grow and close, and rebuilt from `measurements` (``curfew analyze --rebuild``).

An episode is found again by its identity (vantage, target, onset_before), so writing the
same episode twice updates one row, and the live daemon and a rebuild agree on the rows.

The daemon's episodes take the measurements' write path: each event's episode is journaled
by the store (`Store.submit_episodes`) and written from the journal in order, so an episode
survives kill -9 and a database outage like a measurement does; a replay upserts by identity.

    store.submit_episodes(monitor.observe(result))   # in the daemon: journaled at once, never blocks
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.episodes import Episode, Observation, Tracker
from probe.episodes.detect import DEFAULT_CLOSE_AFTER, DEFAULT_OPEN_AFTER
from probe.episodes.model import BLOCKED_VERDICTS
from probe.episodes.monitor import Monitor
from probe.episodes.pattern import local_slot
from probe.store import tables
from probe.store.mapping import Row, episode_row

log = logging.getLogger(__name__)

b = tables.blackouts
m = tables.measurements
FILL_BATCH = 5000


def row_episode(row: Any) -> Episode:
    return Episode(
        vantage=row.vantage,
        target=row.target,
        started_at=row.started_at,
        ended_at=row.ended_at,
        verdict=row.verdict,
        failure=row.failure,
        probes=row.probes,
        onset_after=row.onset_after,
        onset_before=row.onset_before,
        offset_after=row.offset_after,
        offset_before=row.offset_before,
    )


def _zone(zones: Mapping[str, str], vantage: str) -> ZoneInfo:
    return ZoneInfo(zones.get(vantage, "UTC"))


async def save(conn: AsyncConnection, episodes: Sequence[Episode], zones: Mapping[str, str]) -> None:
    """Insert or update each episode, found by its identity (vantage, target, onset_before)."""
    await save_rows(conn, [episode_row(e, _zone(zones, e.vantage)) for e in episodes])


async def save_rows(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    """`save` for `blackouts` rows (`mapping.episode_row`), in order: of several states of
    one episode, the last is what stays."""
    for row in rows:
        target = row["target"]
        same_target = b.c.target.is_(None) if target is None else b.c.target == target
        found = await conn.scalar(
            select(b.c.id).where(
                and_(b.c.vantage == row["vantage"], b.c.onset_before == row["onset_before"], same_target)
            )
        )
        if found is None:
            await conn.execute(insert(b).values(row))
        else:
            await conn.execute(update(b).where(b.c.id == found).values(row))


async def load_episodes(conn: AsyncConnection, since: datetime | None = None) -> list[Episode]:
    """Episodes still open, and those started at or after `since` (all when None), oldest first."""
    query = select(b).order_by(b.c.started_at, b.c.id)
    if since is not None:
        query = query.where((b.c.ended_at.is_(None)) | (b.c.started_at >= since))
    return [row_episode(row) for row in (await conn.execute(query)).all()]


async def load_observations(conn: AsyncConnection, since: datetime) -> list[Observation]:
    """Measurements started at or after `since`, in the order they started."""
    query = (
        select(m.c.vantage, m.c.target, m.c.started_at, m.c.verdict, m.c.failure)
        .where(m.c.started_at >= since)
        .order_by(m.c.started_at, m.c.id)
    )
    return [Observation(*row) for row in (await conn.execute(query)).all()]


async def fill_local_time(conn: AsyncConnection, zones: Mapping[str, str]) -> int:
    """Set local_day/local_hour where they are NULL (rows written before the columns existed,
    or by a vantage whose zone was unknown); returns how many rows were set."""
    filled = 0
    stmt = (
        update(m)
        .where(m.c.id == bindparam("row_id"))
        .values(local_day=bindparam("day"), local_hour=bindparam("hour"))
    )
    last_id = 0
    while True:
        # In id order from where the last batch ended: one pass over the table, with no index
        # on local_day.
        query = (
            select(m.c.id, m.c.vantage, m.c.started_at)
            .where(m.c.local_day.is_(None), m.c.id > last_id)
            .order_by(m.c.id)
            .limit(FILL_BATCH)
        )
        rows = (await conn.execute(query)).all()
        if not rows:
            return filled
        last_id = rows[-1][0]
        params = []
        for row_id, vantage, started_at in rows:
            day, hour = local_slot(started_at, _zone(zones, vantage))
            params.append({"row_id": row_id, "day": day, "hour": hour})
        await conn.execute(stmt, params)
        filled += len(params)


async def rebuild(
    conn: AsyncConnection,
    zones: Mapping[str, str],
    open_after: int = DEFAULT_OPEN_AFTER,
    close_after: int = DEFAULT_CLOSE_AFTER,
    min_span: float = 0.0,
) -> int:
    """Delete every episode and detect them again from all of `measurements`, with the same
    `Tracker` the daemon runs; returns how many episodes there are now. Run in a transaction."""
    tracker = Tracker(open_after, close_after, min_span)
    found: dict[tuple[str, str | None, datetime], Episode] = {}
    query = select(m.c.vantage, m.c.target, m.c.started_at, m.c.verdict, m.c.failure).order_by(
        m.c.started_at, m.c.id
    )
    async for row in await conn.stream(query.execution_options(yield_per=10_000)):
        for event in tracker.observe(Observation(*row)):
            found[event.episode.key] = event.episode
    await conn.execute(delete(b))
    rows = [episode_row(e, _zone(zones, e.vantage)) for e in found.values()]
    if rows:
        await conn.execute(insert(b), rows)
    return len(rows)


async def restore(conn: AsyncConnection, monitor: Monitor, now: datetime) -> None:
    """Seed `monitor` after a restart: the window's closed episodes, the hourly counts, and a
    replay of the measurements since the earliest open episode began (at least the last hour),
    so open episodes carry on with the same identity and nothing is counted as new."""
    window_from = now - timedelta(days=monitor.days + 1)
    stored = await load_episodes(conn, since=window_from)
    starts = [e.onset_after or e.onset_before for e in stored if e.ended_at is None]
    replay_from = min([*starts, now - timedelta(hours=1)])
    conclusive = ("ok", *sorted(BLOCKED_VERDICTS))
    hourly = (
        select(
            m.c.vantage,
            m.c.target,
            m.c.local_day,
            m.c.local_hour,
            func.count(),
            func.sum(case((m.c.verdict == "ok", 1), else_=0)),
        )
        .where(
            m.c.started_at >= window_from,
            m.c.started_at < replay_from,
            m.c.local_day.is_not(None),
            m.c.verdict.in_(conclusive),
        )
        .group_by(m.c.vantage, m.c.target, m.c.local_day, m.c.local_hour)
    )
    counts = [(v, t, d, int(h), int(n), int(ok)) for v, t, d, h, n, ok in (await conn.execute(hourly)).all()]
    monitor.seed(
        await load_observations(conn, replay_from),
        episodes=[e for e in stored if e.ended_at is not None],
        hourly=counts,
    )
