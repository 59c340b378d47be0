"""A small curfew database for the report: five local days in Almaty (UTC+6 in 2019), probes
every 10 minutes of `youtube` and the control `example`, YouTube blocked every evening
20:00-21:59 local (tls_blocked, connection_reset), and the whole vantage cut off on
7 May 03:00-03:59 local."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probe.config import parse_config
from probe.model import Result
from probe.store import Store
from tests.store.builders import result

VANTAGE, ZONE = "kz-almaty", "Asia/Almaty"
DAYS = ("2019-05-06", "2019-05-07", "2019-05-08", "2019-05-09", "2019-05-10")
BLOCKED_HOURS = (20, 21)
SHUTDOWN = ("2019-05-07", 3)
START = datetime(2019, 5, 5, 18, 0, tzinfo=UTC)  # 2019-05-06 00:00 in Almaty
STEP = timedelta(minutes=10)
OFFSET = timedelta(hours=6)


def verdict(target: str, at: datetime) -> str:
    local = at + OFFSET
    if (local.date().isoformat(), local.hour) == SHUTDOWN:
        return "vantage_down"
    if target == "youtube" and local.hour in BLOCKED_HOURS:
        return "tls_blocked"
    return "ok"


def results() -> list[Result]:
    out = []
    for i in range(len(DAYS) * 24 * 6):
        at = START + i * STEP
        for target in ("youtube", "example"):
            out.append(result(verdict(target, at), vantage=VANTAGE, target=target, started_at=at))
    return out


async def _fill(url: str, spool: Path) -> None:
    config = parse_config(
        {
            "vantages": [{"name": VANTAGE, "timezone": ZONE}],
            "targets": [
                {"name": "youtube", "url": "https://www.youtube.com/"},
                {"name": "example", "url": "https://example.com/", "control": True},
            ],
        }
    )
    store = await Store.open(url, spool)
    try:
        await store.sync_inventory(config)
        for r in results():
            store.submit(r)
    finally:
        await store.close()


@pytest.fixture
def kz_db(database_url: str, tmp_path: Path) -> str:
    asyncio.run(_fill(database_url, tmp_path / "spool"))
    return database_url
