"""A database that does not answer (a black-holed port: the connection is queued by the kernel
and never served): every store call fails within a bound instead of hanging, and no
measurement is lost."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.store import Store, StoreError, migrate
from probe.store.engine import CONNECT_TIMEOUT, create_engine
from tests.store.builders import results
from tests.store.test_store import inventory_config

BOUND = 5.0
"""Seconds any one call may take with 0.5 s timeouts (generous for a loaded machine)."""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A PostgreSQL URL whose port listens and never accepts (nor answers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]
    try:
        yield f"postgresql://curfew:secret@127.0.0.1:{port}/curfew"
    finally:
        sock.close()


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.start


async def test_every_store_call_is_bounded_when_the_database_does_not_answer(
    black_hole: str, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    submitted = results(120)
    with Stopwatch() as opening:
        store = await Store.open(
            black_hole,
            spool_dir,
            batch_size=50,
            flush_interval=0.05,
            connect_timeout=0.5,
            command_timeout=0.5,
        )
    assert opening.seconds < BOUND
    for r in submitted:
        store.submit(r)
    with Stopwatch() as flushing:
        await store.flush()  # returns after a failed attempt, the rows on disk
    assert flushing.seconds < BOUND
    assert store.write_errors >= 1 and store.spooled == len(submitted)
    with Stopwatch() as syncing, pytest.raises(StoreError):
        await store.sync_inventory(inventory_config(["facebook"]))
    assert syncing.seconds < BOUND
    with Stopwatch() as closing:
        assert await store.close() == 0
    assert closing.seconds < BOUND
    assert len(list(spool_dir.glob("*.spool"))) >= 1  # for the next run


async def test_a_migration_against_a_database_that_does_not_answer_fails_in_time(black_hole: str) -> None:
    with Stopwatch() as migrating, pytest.raises(TimeoutError):
        await asyncio.to_thread(migrate.upgrade, black_hole, connect_timeout=0.5)
    assert migrating.seconds < BOUND


def test_connections_have_a_connect_timeout_by_default() -> None:
    """asyncpg's own default (60 s) held the daemon's start for minutes."""
    engine = create_engine("postgresql://curfew:secret@127.0.0.1:5432/curfew")
    assert engine.pool.timeout() == CONNECT_TIMEOUT <= 10


async def test_close_with_a_timeout_gives_up_the_flush_in_time_and_keeps_the_rows(
    black_hole: str, spool_dir: Path
) -> None:
    """A connect timeout longer than the stop's budget: close(timeout) is the bound."""
    store = await Store.open(
        black_hole, spool_dir, batch_size=50, flush_interval=0.05, migrate=False, connect_timeout=30
    )
    submitted = results(60)
    for r in submitted:
        store.submit(r)
    with Stopwatch() as closing:
        assert await store.close(timeout=1.0) == 0
    assert closing.seconds < BOUND
    again = await Store.open(black_hole, spool_dir, migrate=False, connect_timeout=0.5)
    assert again.spooled == len(submitted)  # all of them in the journal for the next run
    await again.close(timeout=1.0)
