"""What curfew's daemon does that could need write+execute memory: load every native dependency,
run the uvloop event loop, SQLite through SQLAlchemy, TLS and key generation, a ctypes callback."""

from __future__ import annotations

import ctypes
import ssl

import aiosqlite  # noqa: F401
import alembic  # noqa: F401
import apscheduler  # noqa: F401
import asyncpg  # type: ignore[import-untyped]  # noqa: F401
import dns.asyncresolver  # noqa: F401
import httpx  # noqa: F401
import prometheus_client  # noqa: F401
import pydantic  # noqa: F401
import uvloop
import yaml  # noqa: F401
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import create_async_engine

import probe.cli  # noqa: F401


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.connect() as connection:
        assert (await connection.exec_driver_sql("select 41 + 1")).scalar() == 42
    await engine.dispose()


ec.generate_private_key(ec.SECP256R1())
ssl.create_default_context()
uvloop.run(main())
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
assert callback(1) == 2
print("ok")
