"""The statements the store runs, per backend: idempotent inserts, inventory upserts, retention."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.config import Config
from probe.store import rollup, tables
from probe.store.mapping import Row, inventory_rows


def _insert(backend: str, table: Table) -> Any:
    return (postgresql.insert if backend == "postgresql" else sqlite.insert)(table)


def insert_measurements(backend: str) -> Any:
    """INSERT ... ON CONFLICT (uid) DO NOTHING: a replayed measurement is written once."""
    return _insert(backend, tables.measurements).on_conflict_do_nothing(index_elements=["uid"])


async def upsert_inventory(conn: AsyncConnection, config: Config, now: datetime) -> None:
    """Write the configured vantages and targets; mark the ones no longer configured inactive.

    Rows are never deleted: measurements refer to them by name.
    """
    vantage_rows, target_rows = inventory_rows(config, now)
    for table, rows in ((tables.vantages, vantage_rows), (tables.targets, target_rows)):
        await _upsert(conn, table, rows)
        names = [row["name"] for row in rows]
        await conn.execute(
            update(table).where(table.c.name.not_in(names), table.c.active.is_(True)).values(active=False)
        )


async def _upsert(conn: AsyncConnection, table: Table, rows: Sequence[Row]) -> None:
    stmt = _insert(conn.dialect.name, table)
    changed = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in ("name", "first_seen")}
    await conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=changed), list(rows))


async def delete_older_than(conn: AsyncConnection, older_than: datetime) -> int:
    """Delete the measurements started before `older_than` and take them out of
    `hourly_counts` (hours left empty go with them); returns how many measurements."""
    await rollup.subtract_older_than(conn, older_than)
    m = tables.measurements
    result = await conn.execute(delete(m).where(m.c.started_at < older_than))
    return int(result.rowcount)
