"""Blackouts and hour-of-day SQL in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text

from probe.commands import analyze
from probe.episodes import Episode, EpisodeEvent, Observation, detect
from probe.store import Store, blackouts
from probe.store.engine import create_engine
from tests.store.builders import result

ZONES = {"kz-almaty": "Asia/Almaty"}
T0 = datetime(2019, 5, 20, 13, 50, tzinfo=UTC)  # 19:50 in Almaty (UTC+6 then)
STEP = timedelta(minutes=5)


def rebuild_args(config: object) -> argparse.Namespace:
    """`curfew analyze --rebuild --config CONFIG` as the command line parses it."""
    return argparse.Namespace(config=str(config), rebuild=True, rejudge=False)


def write_config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "curfew.yaml"
    config = {
        "database": database_url,
        "data_dir": str(tmp_path / "data"),
        "vantages": [{"name": "kz-almaty", "timezone": "Asia/Almaty"}],
        "targets": [
            {"name": "youtube", "url": "https://www.youtube.com/"},
            {"name": "control", "url": "https://example.org/", "control": True},
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


EVENING = "..TTTT..T..VVV.."  # an evening block, a lost probe, a shutdown


def evening_results(target: str = "youtube", offset: timedelta = timedelta(0)) -> list[tuple[datetime, str]]:
    codes = {".": "ok", "T": "tls_blocked", "V": "vantage_down"}
    plan = EVENING if target == "youtube" else EVENING.replace("T", ".")
    return [(T0 + i * STEP + offset, codes[c]) for i, c in enumerate(plan)]


async def fill(database_url: str, tmp_path: Path, *, with_zones: bool = True) -> None:
    from probe.config import load_config

    store = await Store.open(database_url, tmp_path / "spool")
    if with_zones:
        await store.sync_inventory(load_config(write_config(tmp_path, database_url)))
    for target, offset in (("youtube", timedelta(0)), ("control", timedelta(seconds=20))):
        for at, verdict in evening_results(target, offset):
            store.submit(result(verdict, vantage="kz-almaty", target=target, started_at=at))
    await store.close()


async def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await engine.dispose()


async def test_local_day_and_hour_are_written_and_the_view_counts_them(
    database_url: str, tmp_path: Path
) -> None:
    await fill(database_url, tmp_path)
    rows = await query(
        database_url,
        "SELECT local_day, local_hour, probes, ok, ratio FROM hourly_reachability "
        "WHERE target = 'youtube' ORDER BY local_hour",
    )
    # 19:50, 19:55 ok; 20:00-20:55: 5 blocked of 9 conclusive (the shutdown's 3 do not count);
    # 21:00, 21:05 ok.
    assert [(d, int(h), int(n), int(ok), round(float(r), 3)) for d, h, n, ok, r in rows] == [
        ("2019-05-20", 19, 2, 2, 1.0),
        ("2019-05-20", 20, 9, 4, 0.444),
        ("2019-05-20", 21, 2, 2, 1.0),
    ]


async def test_save_upserts_by_identity_and_the_view(database_url: str, tmp_path: Path) -> None:
    await fill(database_url, tmp_path)
    start = T0 + 2 * STEP
    opened = Episode(
        "kz-almaty",
        "youtube",
        start - STEP / 2,
        None,
        "tls_blocked",
        "connection_reset",
        2,
        start - STEP,
        start,
    )
    closed = Episode(
        "kz-almaty",
        "youtube",
        opened.started_at,
        start + 4 * STEP - STEP / 2,
        "tls_blocked",
        "connection_reset",
        4,
        start - STEP,
        start,
        start + 3 * STEP,
        start + 4 * STEP,
    )
    shutdown = Episode(
        "kz-almaty",
        None,
        start + 9 * STEP,
        None,
        "vantage_down",
        "dns_servfail_error",
        3,
        None,
        start + 9 * STEP,
    )
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await blackouts.save(conn, [opened, shutdown], ZONES)
        await blackouts.save(conn, [closed, shutdown], ZONES)
    async with engine.connect() as conn:
        assert await blackouts.load_episodes(conn) == [closed, shutdown]
        assert await blackouts.load_episodes(conn, since=start + 5 * STEP) == [shutdown]  # open ones always
    await engine.dispose()
    rows = await query(
        database_url,
        "SELECT scope, target, duration_s, local_start, local_end, verdict, probes "
        "FROM blackout_episodes ORDER BY id",
    )
    assert [(s, t, None if d is None else float(d), ls, le, v, int(p)) for s, t, d, ls, le, v, p in rows] == [
        ("target", "youtube", 1200.0, "2019-05-20 19:57", "2019-05-20 20:17", "tls_blocked", 4),
        ("vantage", None, None, "2019-05-20 20:45", None, "vantage_down", 3),
    ]


async def test_rebuild_equals_live_detection(database_url: str, tmp_path: Path) -> None:
    await fill(database_url, tmp_path, with_zones=False)  # local times left NULL, as before 0003
    config = write_config(tmp_path, database_url)
    engine = create_engine(database_url)
    async with engine.begin() as conn:  # a stale episode, to be replaced
        await blackouts.save(
            conn, [Episode("kz-almaty", "x", T0, None, "dns_blocked", None, 2, None, T0)], ZONES
        )
    # The handler runs its own event loop, as from the command line.
    code = await asyncio.to_thread(analyze.handle, rebuild_args(config))
    assert code == 0
    async with engine.connect() as conn:
        stored = await blackouts.load_episodes(conn)
        observed = await blackouts.load_observations(conn, T0 - STEP)
    await engine.dispose()
    assert stored == detect(observed)
    assert sorted((e.scope, e.verdict) for e in stored) == [
        ("target", "tls_blocked"),
        ("vantage", "vantage_down"),
    ]
    hours = await query(database_url, "SELECT DISTINCT local_hour FROM measurements ORDER BY local_hour")
    assert [int(h) for (h,) in hours] == [19, 20, 21]


async def test_writer_keeps_the_latest_state(database_url: str, tmp_path: Path) -> None:
    await fill(database_url, tmp_path)
    store = await Store.open(database_url, tmp_path / "spool")
    e = Episode("kz-almaty", "youtube", T0, None, "tls_blocked", None, 2, None, T0)
    store.submit_episodes([EpisodeEvent("opened", e)])
    store.submit_episodes([EpisodeEvent("updated", Episode(**{**e.__dict__, "probes": 3}))])
    await store.close()
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        [stored] = await blackouts.load_episodes(conn)
    await engine.dispose()
    assert stored.probes == 3


def test_analyze_without_rebuild_is_a_usage_error(tmp_path: Path) -> None:
    assert analyze.handle(argparse.Namespace(config="x.yaml", rebuild=False, rejudge=False)) == 2


def test_observation_rows_are_observations() -> None:
    assert Observation("v", "t", T0, "ok") == Observation(*("v", "t", T0, "ok", None))


async def test_ready_queries_on_blackouts(database_url: str, tmp_path: Path) -> None:
    from tests.store.test_sql_docs import QUERIES

    await fill(database_url, tmp_path)
    config = write_config(tmp_path, database_url)
    assert await asyncio.to_thread(analyze.handle, rebuild_args(config)) == 0
    evenings, stripe, shutdowns = [await query(database_url, q) for q in QUERIES[4:]]
    # Blocked 20:00-20:15 (probes at 20:00..20:15), onset 19:57:30, offset 20:17:30: 20 minutes.
    assert [(e, f, t, float(n), v, fl, int(p)) for e, f, t, n, v, fl, p in evenings] == [
        ("2019-05-20", "19:57", "20:17", 20.0, "tls_blocked", "connection_reset", 4)
    ]
    assert [(int(h), int(n), float(r)) for h, n, r in stripe] == [(19, 2, 1.0), (20, 9, 0.444), (21, 2, 1.0)]
    assert [(v, s, e, float(d), int(p)) for v, s, e, d, _, p in shutdowns] == [
        ("kz-almaty", "2019-05-20 20:42", "2019-05-20 20:57", 900.0, 6)
    ]


async def test_restore_after_a_restart(database_url: str, tmp_path: Path) -> None:
    from probe.episodes.monitor import Monitor

    await fill(database_url, tmp_path)
    config = write_config(tmp_path, database_url)
    assert await asyncio.to_thread(analyze.handle, rebuild_args(config)) == 0
    engine = create_engine(database_url)
    now = T0 + 16 * STEP
    # Live, the monitor saw every measurement; restored, it must see the same.
    live = Monitor(ZONES)
    async with engine.connect() as conn:
        for o in await blackouts.load_observations(conn, T0 - STEP):
            live.observe(o)
        restored = Monitor(ZONES)
        await blackouts.restore(conn, restored, now)
    await engine.dispose()
    assert restored.snapshot(now).hourly == live.snapshot(now).hourly
    assert restored.open_episodes() == live.open_episodes()
    assert restored.snapshot(now).totals == {}
