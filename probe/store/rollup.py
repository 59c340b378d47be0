"""`hourly_counts`: the measurements of each local hour of each (vantage, target), counted on write.

`curfew report` and the `hourly_reachability` view read these counts (about 500 rows per series
per 21 days) instead of grouping millions of measurements. The writer keeps them in the same
transaction as the measurements (bulk.py), and counts only rows actually inserted (``ON CONFLICT
(uid) DO NOTHING``), so a replayed batch adds nothing. On PostgreSQL the INSERT returns the
columns counted here, `increments` folds them per hour in Python and `POSTGRESQL_UPSERT` adds
them; on SQLite `sqlite_add_inserted()` groups the batch's new rows (ids above the highest before
it) in SQL. Both end in

    INSERT ... ON CONFLICT (vantage, target, local_day, local_hour)
    DO UPDATE SET probes = hourly_counts.probes + excluded.probes, ...

(SQLite >= 3.24 and PostgreSQL). Retention subtracts what it deletes (`subtract_older_than`);
`curfew analyze --rebuild` and migration 0005 recount from `measurements` (`recount`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, case, delete, func, insert, literal_column, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.episodes.model import BLOCKED_VERDICTS, VANTAGE_DOWN
from probe.store import tables

m = tables.measurements
hc = tables.hourly_counts

KEY: Final = ("vantage", "target", "local_day", "local_hour")
COUNTS: Final = ("probes", "ok", "blocked", "vantage_down")
COUNTED_VERDICTS: Final = ("ok", *sorted(BLOCKED_VERDICTS), VANTAGE_DOWN)
RETURNING: Final = "vantage, target, local_day, local_hour, verdict"
"""What the writer's INSERT returns for each row it inserted: the input of `increments`."""

Key = tuple[str, str, str, int]  # vantage, target, local day, local hour

_OK: Final = (1, 1, 0, 0)
_BLOCKED: Final = (1, 0, 1, 0)
_DOWN: Final = (0, 0, 0, 1)


def increments(rows: Iterable[tuple[Any, ...]]) -> dict[Key, list[int]]:
    """Per local hour, what (vantage, target, local_day, local_hour, verdict) rows add to
    `hourly_counts`, as [probes, ok, blocked, vantage_down]. Rows without a local day and
    verdicts that say nothing about reachability (inconclusive, target_down) add nothing.

    >>> increments([("kz", "yt", "2019-05-07", 20, "tls_blocked"), ("kz", "yt", "2019-05-07", 20, "ok"),
    ...             ("kz", "yt", "2019-05-07", 20, "inconclusive"), ("kz", "yt", None, None, "ok")])
    {('kz', 'yt', '2019-05-07', 20): [2, 1, 1, 0]}
    """
    out: dict[Key, list[int]] = {}
    for vantage, target, day, hour, verdict in rows:
        if day is None or hour is None:
            continue
        if verdict == "ok":
            add = _OK
        elif verdict in BLOCKED_VERDICTS:
            add = _BLOCKED
        elif verdict == VANTAGE_DOWN:
            add = _DOWN
        else:
            continue
        key = (vantage, target, day, hour)
        counts = out.get(key)
        if counts is None:
            out[key] = list(add)
        else:
            for i, n in enumerate(add):
                counts[i] += n
    return out


def upsert(placeholders: list[str]) -> str:
    """The statement adding one hour's increments, with the driver's `placeholders` (8)."""
    columns = (*KEY, *COUNTS)
    added = ", ".join(f"{c} = hourly_counts.{c} + excluded.{c}" for c in COUNTS)
    return (
        f"INSERT INTO hourly_counts ({', '.join(columns)}) VALUES ({', '.join(placeholders)}) "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {added}"
    )


POSTGRESQL_UPSERT: Final = upsert([f"${i}" for i in range(1, 9)])


def upsert_params(found: dict[Key, list[int]]) -> list[tuple[Any, ...]]:
    return [(*key, *counts) for key, counts in found.items()]


def counts_query(*where: Any) -> Any:
    """(vantage, target, local_day, local_hour, probes, ok, blocked, vantage_down) per local hour
    of the measurements matching `where`: what `hourly_counts` holds for them."""
    blocked = sorted(BLOCKED_VERDICTS)
    return (
        select(
            m.c.vantage,
            m.c.target,
            m.c.local_day,
            m.c.local_hour,
            func.sum(case((m.c.verdict == "ok", 1), (m.c.verdict.in_(blocked), 1), else_=0)),
            func.sum(case((m.c.verdict == "ok", 1), else_=0)),
            func.sum(case((m.c.verdict.in_(blocked), 1), else_=0)),
            func.sum(case((m.c.verdict == VANTAGE_DOWN, 1), else_=0)),
        )
        .where(
            m.c.local_day.is_not(None),
            m.c.local_hour.is_not(None),
            m.c.verdict.in_(COUNTED_VERDICTS),
            *where,
        )
        .group_by(m.c.vantage, m.c.target, m.c.local_day, m.c.local_hour)
    )


@functools.cache
def sqlite_add_inserted() -> str:
    """SQLite: add the measurements with an id above the one parameter (those the current
    transaction inserted, its write lock held since before the insert) to `hourly_counts`,
    grouped in SQL: no row goes back through Python."""
    stmt = sqlite.insert(hc).from_select([*KEY, *COUNTS], counts_query(m.c.id > literal_column("?")))
    stmt = stmt.on_conflict_do_update(
        index_elements=list(KEY), set_={c: hc.c[c] + stmt.excluded[c] for c in COUNTS}
    )
    return str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


async def recount(conn: AsyncConnection) -> int:
    """Replace `hourly_counts` with a count of all of `measurements`; returns its rows. Run in
    a transaction (``curfew analyze --rebuild``, after local times are filled in)."""
    await conn.execute(delete(hc))
    await conn.execute(insert(hc).from_select([*KEY, *COUNTS], counts_query()))
    return int(await conn.scalar(select(func.count()).select_from(hc)) or 0)


async def subtract_older_than(conn: AsyncConnection, older_than: datetime) -> None:
    """Take the measurements started before `older_than` out of `hourly_counts`, and drop the
    hours left with nothing. Run in the transaction that deletes those measurements, first."""
    gone = (await conn.execute(counts_query(m.c.started_at < older_than))).all()
    if not gone:
        return
    stmt = (
        update(hc)
        .where(*(hc.c[k] == bindparam(f"k_{k}") for k in KEY))
        .values({c: hc.c[c] - bindparam(f"n_{c}") for c in COUNTS})
    )
    params = [
        {**{f"k_{k}": v for k, v in zip(KEY, row[:4], strict=True)},
         **{f"n_{c}": int(v) for c, v in zip(COUNTS, row[4:], strict=True)}}
        for row in gone
    ]  # fmt: skip
    await conn.execute(stmt, params)
    await conn.execute(delete(hc).where(hc.c.probes <= 0, hc.c.vantage_down <= 0))
