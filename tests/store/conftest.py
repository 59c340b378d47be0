"""Helpers for the store's tests: read back what reached the database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from sqlalchemy import select, text

from probe.store import tables
from probe.store.engine import create_engine

Rows = list[dict[str, Any]]


async def fetch(url: str, table: Any = tables.measurements) -> Rows:
    """Every row of `table`, in insertion (primary key) order."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            order = table.c.id if "id" in table.c else table.c.name
            result = await conn.execute(select(table).order_by(order))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def execute(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture
def rows(database_url: str) -> Callable[..., Coroutine[Any, Any, Rows]]:
    async def read(table: Any = tables.measurements) -> Rows:
        return await fetch(database_url, table)

    return read


@pytest.fixture
async def spool_dir(tmp_path: Any) -> AsyncIterator[Any]:
    yield tmp_path / "spool"
