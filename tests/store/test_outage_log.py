"""What the store says about a database outage: one line when it starts, one when writes
resume (how long it was out, how many rows were behind), not one per retry."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from probe.store import Store
from tests.store.builders import T0, results
from tests.store.conftest import execute


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"event={name} ")]


async def test_an_outage_is_logged_once_and_its_end_with_its_length_and_backlog(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = await Store.open(database_url, spool_dir, batch_size=50, flush_interval=0.05)
    await execute(database_url, "ALTER TABLE measurements RENAME TO measurements_away")
    behind = results(120)
    for r in behind:
        store.submit(r)
    for _ in range(3):  # several failed attempts
        await store.flush()
    assert store.write_errors >= 3
    (failed,) = events(caplog, "database-write-failed")
    assert "spooled=120" in failed and "reason=" in failed

    await execute(database_url, "ALTER TABLE measurements_away RENAME TO measurements")
    for r in results(5, start=T0 + timedelta(hours=1)):
        store.submit(r)
    await store.flush()
    await store.close()
    (resumed,) = events(caplog, "database-write-resumed")
    found = re.search(r"down_s=(\d+\.\d+) behind=(\d+) failed_attempts=(\d+)", resumed)
    assert found is not None, resumed
    assert float(found[1]) > 0 and int(found[2]) >= 120 and int(found[3]) >= 3
    assert len(await rows()) == 125
