"""What `curfew report` reads: hourly cells, episodes, the vantages' zones.

The cells come from `hourly_counts` (probe/store/rollup.py), which the writer keeps as it
inserts measurements: ~43,000 rows for 90 days x 20 series, where grouping the 2.6 M
measurements themselves took ~1 s. Only when that table has nothing for the range (a database
from before migration 0005, or one filled by hand) are they counted from `measurements`, and
the report says so in its first line. The report's range is in local days (the vantage's own
calendar), so no zone is needed to select it.

Episodes come from the `blackouts` table when it has any for the range; otherwise (a database
written by ``curfew lab simulate``, or history from before the table) they are detected here
from the measurements with the daemon's own tracker.

Imports stay light (no writer, no Alembic): this is what a fresh `curfew report` loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from probe.episodes import Episode, Observation, detect
from probe.store import tables
from probe.store.blackouts import row_episode
from probe.store.engine import StoreError, backend, create_engine
from probe.store.errors import database_errors
from probe.store.rollup import counts_query

m = tables.measurements
b = tables.blackouts
hc = tables.hourly_counts
# A local day lies within [its UTC date - 14 h, the next UTC date + 12 h) in any zone: a range of
# local days is found in started_at (indexed) widened by a day on each side.
ZONE_MARGIN = timedelta(days=1)

EpisodeSource = Literal["blackouts", "measurements"]
CellSource = Literal["hourly_counts", "measurements"]


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
    cells_from: CellSource = "hourly_counts"


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


async def latest_day(conn: AsyncConnection, f: Filters, table: Any = hc) -> date | None:
    """The latest local day with a count in `table` (`hourly_counts`, or `measurements`)."""
    query = _where(
        select(func.max(table.c.local_day)), _in(table.c.vantage, f.vantages), _in(table.c.target, f.targets)
    )
    value = await conn.scalar(query)
    return None if value is None else date.fromisoformat(value)


def _started_within(since: date, until: date) -> tuple[Any, ...]:
    """Conditions on `measurements` for the local days [since, until]: the started_at range that
    holds them in any zone (a seek on its index), then local_day itself."""
    first = datetime.combine(since, time(0), tzinfo=UTC) - ZONE_MARGIN
    after = datetime.combine(until + timedelta(days=1), time(0), tzinfo=UTC) + ZONE_MARGIN
    return (
        m.c.started_at >= first,
        m.c.started_at < after,
        m.c.local_day >= _day(since),
        m.c.local_day <= _day(until),
    )


async def hourly_cells(
    conn: AsyncConnection, since: date, until: date, f: Filters, source: CellSource = "hourly_counts"
) -> dict[CellKey, Cell]:
    """Every (vantage, target, local day, local hour) with counted measurements in [since,
    until]: from `hourly_counts`, or counted from `measurements` (the same numbers, slower)."""
    if source == "hourly_counts":
        query = _where(
            select(
                hc.c.vantage, hc.c.target, hc.c.local_day, hc.c.local_hour,
                hc.c.probes, hc.c.ok, hc.c.blocked, hc.c.vantage_down,
            ),
            hc.c.local_day >= _day(since),
            hc.c.local_day <= _day(until),
            _in(hc.c.vantage, f.vantages),
            _in(hc.c.target, f.targets),
        )  # fmt: skip
    else:
        filters = (_in(m.c.vantage, f.vantages), _in(m.c.target, f.targets))
        query = counts_query(*_started_within(since, until), *(c for c in filters if c is not None))
    rows: Sequence[Any] = (await conn.execute(query)).all()
    if source == "measurements" and conn.dialect.name == "postgresql":  # SUM: numeric there
        rows = [(*r[:4], *(int(n) for n in r[4:])) for r in rows]
    return {(v, t, day, hour): Cell(*counts) for v, t, day, hour, *counts in rows}


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
        *_started_within(since, until),
        m.c.verdict != "inconclusive",
        _in(m.c.vantage, f.vantages),
    )
    rows = [Observation(*row) for row in (await conn.execute(query)).all()]
    # Without a config: the defaults' confirmation span (2 re-probes 30 s apart).
    found = detect(rows, confirm_count, confirm_count, min_span=30.0 * confirm_count)
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
        with database_errors(_describe(url)):
            return await _load(engine, url, f, zones, confirm_count)
    finally:
        await engine.dispose()


async def _load(
    engine: AsyncEngine, url: str, f: Filters, zones: Mapping[str, str] | None, confirm_count: int
) -> ReportData | None:
    async with engine.connect() as conn:
        names, columns = await _schema(conn)
        if "measurements" not in names or "vantages" not in names:
            raise StoreError(f"{_describe(url)} is not a curfew database (no measurements table)")
        if "local_day" not in columns:
            raise StoreError("the schema is too old for reports: run `curfew analyze --rebuild`")
        known = {**(zones or {}), **await load_zones(conn)}
        rollup = "hourly_counts" in names
        until = f.until or await latest_day(conn, f, hc if rollup else m)
        if until is None and rollup:
            until = await latest_day(conn, f, m)  # counts not filled in yet
        if until is None:
            return None
        since = f.since or until - timedelta(days=f.days - 1)
        if since > until:
            return None
        source: CellSource = "hourly_counts" if rollup else "measurements"
        cells = await hourly_cells(conn, since, until, f, source) if rollup else {}
        if not cells:
            source = "measurements"
            cells = await hourly_cells(conn, since, until, f, source)
        if not cells:
            return None
        data = ReportData(since, until, known, cells, cells_from=source)
        if "blackouts" in names:
            data.episodes = await stored_episodes(conn, since, until, f)
        if not data.episodes:
            data.episodes = await detected_episodes(conn, since, until, f, confirm_count)
            data.episodes_from = "measurements"
    return data


def _describe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
