"""Alembic environment: async engines for sqlite:/// and postgresql:// URLs alike.

The URL comes from `probe.store.migrate` (config attribute "url"), else ``-x url=...``, else
the CURFEW_DATABASE environment variable, else alembic.ini's sqlalchemy.url.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from probe.store.engine import async_url, backend, create_engine, create_sqlite_engine
from probe.store.tables import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("CURFEW_DATABASE")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set CURFEW_DATABASE")
    return str(url)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: later migrations copy-and-move tables instead.
        render_as_batch=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    _configure(url=async_url(database_url()), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_sqlite_migrations() -> None:
    engine = create_sqlite_engine(database_url())
    try:
        with engine.connect() as connection:
            _run_sync(connection)
            connection.commit()
    finally:
        engine.dispose()


async def run_migrations_online() -> None:
    # A server that does not answer fails the connect in a bounded time (engine.py's default,
    # or the caller's: probe.store.migrate passes its `connect_timeout` as an attribute).
    timeout = config.attributes.get("connect_timeout")
    engine = create_engine(database_url(), **({"connect_timeout": float(timeout)} if timeout else {}))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif backend(database_url()) == "sqlite":
    run_sqlite_migrations()
else:
    asyncio.run(run_migrations_online())
