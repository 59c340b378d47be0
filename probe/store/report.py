"""What `curfew report` reads: hourly cells aggregated in SQL, episodes, the vantages' zones.

The cells are counted by the database, never row by row in Python: one GROUP BY over the
covering index (local_day, vantage, target, local_hour, verdict) (migration 0004), split into
day ranges run side by side on separate connections. The report's range is in local days (the
vantage's own calendar, `measurements.local_day`), so the range filter is a seek on that index.

Episodes come from the `blackouts` table when it has any for the range; otherwise (a database
written by ``curfew lab simulate``, or history from before the table) they are detected here
from the measurements with the daemon's own tracker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from probe.episodes import Episode, Observation, detect
from probe.episodes.model import BLOCKED_VERDICTS, VANTAGE_DOWN
from probe.store import tables
from probe.store.blackouts import row_episode
from probe.store.engine import StoreError, backend, create_engine

m = tables.measurements
b = tables.blackouts
PARALLEL_QUERIES = min(4, os.cpu_count() or 1)  # day ranges counted side by side, a connection each

EpisodeSource = Literal["blackouts", "measurements"]


@dataclass
class Cell:
    """One local hour of one (vantage, target): `probes` conclusive ones (ok or blocked, as in
    the `hourly_reachability` view), `ok` and `blocked` of them, and `vantage_down` probes
    that found the whole vantage cut off (not counted in `probes`)."""

    probes: int = 0
    ok: int = 0
    blocked: int = 0
    vantage_down: int = 0

    @property
    def ratio(self) -> float | None:
        """The reachable share, None without conclusive probes."""
        return self.ok / self.probes if self.probes else None

    @property
    def blocked_share(self) -> float | None:
        return self.blocked / self.probes if self.probes else None


CellKey = tuple[str, str, str, int]  # vantage, target, local day (YYYY-MM-DD), local hour


@dataclass(frozen=True)
class Filters:
    """The report's range in local days (inclusive; None: up to the latest day with data and
    `days` back from there) and the vantages and targets to keep (empty: all)."""

    since: date | None = None
    until: date | None = None
    vantages: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    days: int = 14


@dataclass
class ReportData:
    since: date
    until: date
    zones: dict[str, str]
    # Kept out of repr: asyncio formats the repr of a task's result, which for 40,000 cells
    # cost half a second per report.
    cells: dict[CellKey, Cell] = field(default_factory=dict, repr=False)
    episodes: list[Episode] = field(default_factory=list, repr=False)
    episodes_from: EpisodeSource = "blackouts"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if backend(url) != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if parsed.database.startswith("file:") else Path(parsed.database).expanduser()


def _in(column: Any, names: Sequence[str]) -> Any:
    return column.in_(names) if names else None


def _where(query: Any, *conditions: Any) -> Any:
    return query.where(*(c for c in conditions if c is not None))


def _day(d: date) -> str:
    return d.isoformat()


async def _schema(conn: AsyncConnection) -> tuple[set[str], set[str]]:
    def read(sync: Any) -> tuple[set[str], set[str]]:
        inspector = inspect(sync)
        names = set(inspector.get_table_names())
        columns = (
            {c["name"] for c in inspector.get_columns("measurements")} if "measurements" in names else set()
        )
        return names, columns

    return await conn.run_sync(read)


async def load_zones(conn: AsyncConnection) -> dict[str, str]:
    """vantage -> IANA zone, from the `vantages` inventory."""
    rows = await conn.execute(select(tables.vantages.c.name, tables.vantages.c.timezone))
    return {name: zone for name, zone in rows.all()}


async def latest_day(conn: AsyncConnection, f: Filters) -> date | None:
    """The latest local day with a measurement (a seek on the local_day index)."""
    query = _where(
        select(m.c.local_day).order_by(m.c.local_day.desc()).limit(1),
        m.c.local_day.is_not(None),
        _in(m.c.vantage, f.vantages),
        _in(m.c.target, f.targets),
    )
    value = await conn.scalar(query)
    return None if value is None else date.fromisoformat(value)


def _cells_query(first: date, last: date, f: Filters) -> Any:
    # Grouped in the index's order, verdicts counted apart: no CASE per row, and the database
    # walks the covering index without a sort (SQLite) or hashes few groups (PostgreSQL).
    order = (m.c.local_day, m.c.vantage, m.c.target, m.c.local_hour, m.c.verdict)
    return _where(
        select(*order, func.count()),
        m.c.local_day >= _day(first),
        m.c.local_day <= _day(last),
        _in(m.c.vantage, f.vantages),
        _in(m.c.target, f.targets),
    ).group_by(*order)


def _ranges(since: date, until: date, parts: int) -> list[tuple[date, date]]:
    days = (until - since).days + 1
    step = -(-days // max(1, min(parts, days)))
    out = []
    first = since
    while first <= until:
        last = min(until, first + timedelta(days=step - 1))
        out.append((first, last))
        first = last + timedelta(days=1)
    return out


async def hourly_cells(engine: AsyncEngine, since: date, until: date, f: Filters) -> dict[CellKey, Cell]:
    """Every (vantage, target, local day, local hour) with measurements in [since, until]."""

    async def part(first: date, last: date) -> list[Any]:
        async with engine.connect() as conn:
            return list((await conn.execute(_cells_query(first, last, f))).all())

    parts = await asyncio.gather(*(part(a, z) for a, z in _ranges(since, until, PARALLEL_QUERIES)))
    cells: dict[CellKey, Cell] = {}
    for rows in parts:
        for day, vantage, target, hour, verdict, n in rows:
            if hour is None:
                continue
            is_ok, is_blocked = verdict == "ok", verdict in BLOCKED_VERDICTS
            if not (is_ok or is_blocked or verdict == VANTAGE_DOWN):
                continue  # inconclusive, target_down: nothing about reachability at the vantage
            cell = cells.get((vantage, target, day, hour))
            if cell is None:
                cell = cells[(vantage, target, day, hour)] = Cell()
            if verdict == VANTAGE_DOWN:
                cell.vantage_down += n
                continue
            cell.probes += n
            cell.ok += n if is_ok else 0
            cell.blocked += n if is_blocked else 0
    return cells


async def stored_episodes(conn: AsyncConnection, since: date, until: date, f: Filters) -> list[Episode]:
    """Episodes from `blackouts` that overlap the local days [since, until] (by their local
    start and end, so no zone is needed), vantage shutdowns kept whatever the target filter."""
    after_range = _day(until + timedelta(days=1))
    targets = (b.c.target.is_(None) | b.c.target.in_(f.targets)) if f.targets else None
    query = _where(
        select(b).order_by(b.c.started_at, b.c.id),
        b.c.local_start < after_range,
        b.c.local_end.is_(None) | (b.c.local_end >= _day(since)),
        _in(b.c.vantage, f.vantages),
        targets,
    )
    return [row_episode(row) for row in (await conn.execute(query)).all()]


async def detected_episodes(
    conn: AsyncConnection, since: date, until: date, f: Filters, confirm_count: int
) -> list[Episode]:
    """Episodes detected from the measurements of [since, until] with the daemon's tracker.
    Every target of a vantage is read (a shutdown needs them all), then the filter applies."""
    query = _where(
        select(m.c.vantage, m.c.target, m.c.started_at, m.c.verdict, m.c.failure).order_by(
            m.c.started_at, m.c.id
        ),
        m.c.local_day >= _day(since),
        m.c.local_day <= _day(until),
        m.c.verdict != "inconclusive",
        _in(m.c.vantage, f.vantages),
    )
    rows = [Observation(*row) for row in (await conn.execute(query)).all()]
    found = detect(rows, confirm_count, confirm_count)
    return [e for e in found if not f.targets or e.target is None or e.target in f.targets]


async def load(
    url: str, f: Filters, *, zones: Mapping[str, str] | None = None, confirm_count: int = 2
) -> ReportData | None:
    """Everything the report shows, or None when no measurement matches the range and filters.

    Zones: the `vantages` table's, else `zones` (from a config), else UTC. Raises `StoreError`
    with one readable line when the database is missing, unreachable or not a curfew database.
    """
    path = _sqlite_path(url)
    if path is not None and not path.is_file():
        raise StoreError(f"no database at {path}")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names, columns = await _schema(conn)
            if "measurements" not in names or "vantages" not in names:
                raise StoreError(f"{_describe(url)} is not a curfew database (no measurements table)")
            if "local_day" not in columns:
                raise StoreError("the schema is too old for reports: run `curfew analyze --rebuild`")
            known = {**(zones or {}), **await load_zones(conn)}
            until = f.until or await latest_day(conn, f)
            if until is None:
                return None
            since = f.since or until - timedelta(days=f.days - 1)
            if since > until:
                return None
        cells = await hourly_cells(engine, since, until, f)
        if not cells:
            return None
        data = ReportData(since, until, known, cells)
        async with engine.connect() as conn:
            if "blackouts" in names:
                data.episodes = await stored_episodes(conn, since, until, f)
            if not data.episodes:
                data.episodes = await detected_episodes(conn, since, until, f, confirm_count)
                data.episodes_from = "measurements"
        return data
    except DBAPIError as exc:
        raise StoreError(str(exc.orig).strip().splitlines()[0] or type(exc.orig).__name__) from exc
    finally:
        await engine.dispose()


def _describe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
