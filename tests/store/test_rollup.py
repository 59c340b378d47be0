"""`hourly_counts` is always what a GROUP BY over `measurements` says: after ingest, after a replay
of the same rows, after `curfew analyze --rebuild`, after retention, and after migration 0005
counts a database written before it. On SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from probe.commands import analyze
from probe.config import parse_config
from probe.model import Result
from probe.store import Store, rollup, tables, upgrade
from probe.store.engine import create_engine
from probe.store.mapping import result_row
from tests.store.builders import result
from tests.store.conftest import execute
from tests.store.test_blackouts import write_config

VANTAGE, ZONE = "kz-almaty", "Asia/Almaty"
T0 = datetime(2019, 5, 20, 13, 50, tzinfo=UTC)  # 19:50 in Almaty (UTC+6 then)
STEP = timedelta(minutes=5)
VERDICTS = ("ok", "tls_blocked", "ok", "inconclusive", "vantage_down", "dns_blocked", "target_down", "ok")
CONFIG = {
    "vantages": [{"name": VANTAGE, "timezone": ZONE}],
    "targets": [
        {"name": "youtube", "url": "https://www.youtube.com/"},
        {"name": "control", "url": "https://example.org/", "control": True},
    ],
}


def rebuild_args(config: object) -> argparse.Namespace:
    """`curfew analyze --rebuild --config CONFIG` as the command line parses it."""
    return argparse.Namespace(config=str(config), rebuild=True, rejudge=False)


def mixed_results(n: int = 40, start: datetime = T0) -> list[Result]:
    """`n` probes of each target, 5 minutes apart (19:50 local onwards), every kind of verdict."""
    out = []
    for i in range(n):
        for j, target in enumerate(("youtube", "control")):
            verdict = VERDICTS[(i + j) % len(VERDICTS)]
            out.append(result(verdict, vantage=VANTAGE, target=target, started_at=start + i * STEP))
    return out


async def write(url: str, spool: Path, submitted: list[Result]) -> None:
    store = await Store.open(url, spool, batch_size=7, flush_interval=0.05)  # batches that split hours
    try:
        await store.sync_inventory(parse_config(CONFIG))
        for r in submitted:
            store.submit(r)
    finally:
        await store.close()


async def tables_now(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(hourly_counts, the same counted from measurements), each sorted."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(select(tables.hourly_counts))).all()
            counted = (await conn.execute(rollup.counts_query())).all()
    finally:
        await engine.dispose()
    return sorted(map(_plain, stored)), sorted(map(_plain, counted))


def _plain(row: Any) -> tuple[Any, ...]:
    return (*row[:3], *(int(v) for v in row[3:]))  # SUM is numeric on PostgreSQL


async def assert_counts_match(url: str) -> list[tuple[Any, ...]]:
    stored, counted = await tables_now(url)
    assert stored == counted
    return stored


def test_increments_count_conclusive_probes_and_shutdowns_per_local_hour() -> None:
    rows = [
        ("kz", "yt", "2019-05-20", 20, "ok"),
        ("kz", "yt", "2019-05-20", 20, "throttled"),
        ("kz", "yt", "2019-05-20", 20, "vantage_down"),
        ("kz", "yt", "2019-05-20", 20, "target_down"),
        ("kz", "yt", "2019-05-20", 21, "inconclusive"),
        ("kz", "yt", None, None, "ok"),  # zone unknown: counted once --rebuild sets its local time
    ]
    assert rollup.increments(rows) == {("kz", "yt", "2019-05-20", 20): [2, 1, 1, 1]}


async def test_ingest_counts_every_local_hour(database_url: str, tmp_path: Path) -> None:
    await write(database_url, tmp_path / "spool", mixed_results())
    stored = await assert_counts_match(database_url)
    # 40 probes of youtube 19:50-23:05 local: 2 in hour 19, 12 in 20, 21 and 22, 2 in 23.
    youtube = {hour: counts for _, target, _, hour, *counts in stored if target == "youtube"}
    assert sorted(youtube) == [19, 20, 21, 22, 23]
    # Hour 20 is VERDICTS[2:] + VERDICTS + VERDICTS[:6]: of 12 probes, 4 ok and 3 blocked
    # conclusive, 2 vantage_down; 2 inconclusive and 1 target_down not counted.
    assert youtube[20] == [7, 4, 3, 2]


async def test_a_replay_of_the_same_rows_counts_nothing_twice(database_url: str, tmp_path: Path) -> None:
    first = mixed_results()
    await write(database_url, tmp_path / "spool-1", first)
    before = await assert_counts_match(database_url)
    await write(database_url, tmp_path / "spool-2", first)  # every uid already there
    assert await assert_counts_match(database_url) == before
    # Half old, half new, in the same batches: only the new ones count.
    more = mixed_results(20, start=T0 + 40 * STEP)
    await write(database_url, tmp_path / "spool-3", first[-20:] + more)
    after = await assert_counts_match(database_url)
    assert sum(c[4] + c[7] for c in after) > sum(c[4] + c[7] for c in before)


async def test_rebuild_recounts_from_measurements(database_url: str, tmp_path: Path) -> None:
    await write(database_url, tmp_path / "spool", mixed_results())
    expected = await assert_counts_match(database_url)
    await execute(database_url, "UPDATE hourly_counts SET probes = probes + 100")
    await execute(database_url, "DELETE FROM hourly_counts WHERE local_hour = 21")
    config = write_config(tmp_path, database_url)
    code = await asyncio.to_thread(analyze.handle, rebuild_args(config))
    assert code == 0
    assert await assert_counts_match(database_url) == expected


async def test_rebuild_counts_rows_written_without_a_zone(database_url: str, tmp_path: Path) -> None:
    store = await Store.open(database_url, tmp_path / "spool")  # no inventory: no local times
    for r in mixed_results(10):
        store.submit(r)
    await store.close()
    assert (await tables_now(database_url))[0] == []
    config = write_config(tmp_path, database_url)
    await asyncio.to_thread(analyze.handle, rebuild_args(config))
    assert len(await assert_counts_match(database_url)) == 2 * 2  # hours 19 and 20, two targets


async def test_retention_takes_deleted_measurements_out_of_the_counts(
    database_url: str, tmp_path: Path
) -> None:
    await write(database_url, tmp_path / "spool", mixed_results())
    store = await Store.open(database_url, tmp_path / "spool")
    try:
        deleted = await store.apply_retention(T0 + 20 * STEP)  # 21:30 local: mid-hour
    finally:
        await store.close()
    assert deleted == 2 * 20
    stored = await assert_counts_match(database_url)
    assert {hour for _, _, _, hour, *_ in stored} == {21, 22, 23}
    assert all(r[4] + r[7] > 0 for r in stored)  # hours left empty are gone


async def test_migration_0005_counts_what_was_written_before_it(database_url: str, tmp_path: Path) -> None:
    await asyncio.to_thread(upgrade, database_url, "0004")
    rows = [result_row(r) | {"local_day": "2019-05-20", "local_hour": 20} for r in mixed_results(12)]
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(insert(tables.measurements), [dict(r) for r in rows])
    await engine.dispose()
    await asyncio.to_thread(upgrade, database_url)
    stored = await assert_counts_match(database_url)
    assert {(r[1], r[3]) for r in stored} == {("youtube", 20), ("control", 20)}


@pytest.mark.parametrize("verdict", ["inconclusive", "target_down"])
async def test_an_hour_of_only_uninformative_probes_has_no_row(
    database_url: str, tmp_path: Path, verdict: str
) -> None:
    await write(database_url, tmp_path / "spool", [result(verdict, vantage=VANTAGE, started_at=T0)])
    assert await assert_counts_match(database_url) == []
