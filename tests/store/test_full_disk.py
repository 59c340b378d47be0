"""The journal on a disk that fills up (a real, small tmpfs): what the store says it holds, it
holds, and what it could not keep is named at stop, never reported as spooled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.episodes import Episode, EpisodeEvent
from probe.store import Store
from probe.store.spool_read import read_segment
from tests.store.builders import T0, results
from tests.store.test_store import unreachable

MIB = 1024 * 1024
SMALL: dict[str, Any] = {"batch_size": 50, "flush_interval": 0.05}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (about 190 journal lines of ~5 KB), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={MIB},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def scrape(store: Store) -> dict[str, float]:
    """The store's series as the daemon's /metrics shows them."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from probe.metrics import Metrics
    from probe.metrics.journal import JournalCollector

    metrics = Metrics(CollectorRegistry())
    metrics.set_spool_source(lambda: store.spooled)
    metrics.registry.register(JournalCollector(store))
    body = metrics.render()[0].decode()
    return {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}


def rows_on_disk(spool_dir: Path) -> set[str]:
    """The uids the journal's files hold, as the next run will read them."""
    return {
        row["uid"] for path in spool_dir.glob("*.spool") for row in read_segment(path, int(path.stem)).rows
    }


async def test_a_full_disk_with_the_database_down_names_what_it_lost_and_counts_only_what_it_kept(
    database_url: str, small_disk: Path, tmp_path: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = small_disk / "spool"
    submitted = results(240)  # ~1.25 MB of journal for 1 MiB of disk
    down = await Store.open(
        unreachable(database_url, tmp_path), spool_dir, batch_size=50, flush_interval=0.05
    )
    for r in submitted:
        down.submit(r)
    opened = Episode("kz-almaty", "youtube", T0, None, "tls_blocked", None, 2, None, T0)
    down.submit_episodes([EpisodeEvent("opened", opened)])  # the disk is full by now
    await down.flush()  # one failed database attempt, everything that can be is on disk
    on_disk = rows_on_disk(spool_dir)
    assert 0 < len(on_disk) < len(submitted)
    assert down.spooled == len(on_disk)  # the gauge counts what the disk holds, nothing else
    assert down.unjournaled == len(submitted) - len(on_disk) + 1  # and the episode's state
    assert down.journal_errors >= 1
    scraped = scrape(down)
    assert scraped["curfew_spooled_measurements"] == len(on_disk)
    assert scraped["curfew_unjournaled_measurements"] == len(submitted) - len(on_disk) + 1
    assert scraped["curfew_journal_write_errors_total"] >= 1

    lost = await down.close()
    assert lost == down.lost == len(submitted) - len(on_disk) + 1
    assert "event=episode-states-lost count=1 " in caplog.text and "kz-almaty/youtube@" in caplog.text
    (said,) = [r.getMessage() for r in caplog.records if "event=measurements-lost" in r.getMessage()]
    named = set(said.split("uids=", 1)[1].split(","))
    assert f"count={lost - 1}" in said and "No space left on device" in said
    assert named == {r.measurement.uid for r in submitted} - on_disk

    up = await Store.open(database_url, spool_dir, batch_size=50, flush_interval=0.05)
    await up.flush()
    assert await up.close() == 0
    stored = {row["uid"] for row in await rows()}
    assert stored == on_disk  # every row it said it spooled, and exactly those
    assert stored | named == {r.measurement.uid for r in submitted}


async def test_rows_held_in_memory_reach_the_disk_once_it_has_room_again(
    database_url: str, small_disk: Path, tmp_path: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (MIB - 200 * 1024))
    spool_dir = small_disk / "spool"
    submitted = results(120)
    down = await Store.open(
        unreachable(database_url, tmp_path), spool_dir, batch_size=50, flush_interval=0.05
    )
    for r in submitted:
        down.submit(r)
    await down.flush()
    assert down.unjournaled > 0
    filler.unlink()  # room again: the writer's next retry writes them out
    for _ in range(200):
        if down.unjournaled == 0:
            break
        await asyncio.sleep(0.05)
    assert down.unjournaled == 0 and down.spooled == len(submitted)
    assert "event=journal-write-resumed" in caplog.text
    assert await down.close() == 0
    assert "measurements-lost" not in caplog.text

    up = await Store.open(database_url, spool_dir, batch_size=50, flush_interval=0.05)
    await up.flush()
    await up.close()
    assert [row["uid"] for row in await rows()] == [r.measurement.uid for r in submitted]


async def test_a_full_disk_with_the_database_up_loses_nothing(
    database_url: str, small_disk: Path, rows: Any
) -> None:
    spool_dir = small_disk / "spool"
    (small_disk / "filler").write_bytes(b"\0" * (MIB - 64 * 1024))
    submitted = results(300)
    store = await Store.open(database_url, spool_dir, batch_size=50, flush_interval=0.05)
    for r in submitted:
        store.submit(r)
    await store.flush()
    assert store.journal_errors >= 1
    assert await store.close() == 0
    assert [row["uid"] for row in await rows()] == [r.measurement.uid for r in submitted]
    with contextlib.suppress(FileNotFoundError):
        assert not rows_on_disk(spool_dir)
