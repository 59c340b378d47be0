"""Fixtures shared across test packages.

`database_url`: a fresh, empty database per test: a SQLite file, and a PostgreSQL database
when CURFEW_TEST_POSTGRES names a server (e.g. postgresql://curfew:curfew@127.0.0.1:5432/curfew_test;
the role needs CREATEDB). Without it the PostgreSQL variant is skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from probe import redaction

POSTGRES_ENV = "CURFEW_TEST_POSTGRES"


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _no_remembered_secrets() -> Iterator[None]:
    """Each test starts with no password remembered by another test's config (probe.redaction)."""
    redaction.forget()
    yield
    redaction.forget()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'curfew.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_ENV}=postgresql://user:pass@host/db to test PostgreSQL")
    name = f"curfew_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(drop_database(base, name))


async def drop_database(url: str, name: str) -> None:
    """Drop a test database, ending any sessions a test left behind (FORCE).

    PostgreSQL refuses FORCE to a role without pg_signal_backend while an autovacuum worker
    is in the database (the worker's role is not one the test role belongs to). The worker
    is done with a test-sized database in moments, so the drop is retried, a bounded
    number of times (as it is when a session is still being set up: "in use").
    """
    import asyncpg

    for attempt in range(50):
        try:
            await _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)
