"""Episodes take the measurements' write path: journaled on submit, written in order from the
journal, so nothing is lost to kill -9 or a database outage, and a replay changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probe.episodes import Episode, EpisodeEvent
from probe.store import Store, tables
from tests.store.test_journal_faults import write_segment
from tests.store.test_store import unreachable

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)  # 20:00 in Almaty (UTC+6 then)
SMALL: dict[str, Any] = {"batch_size": 50, "flush_interval": 0.05}


def episode(**changes: Any) -> Episode:
    base = Episode(
        "kz-almaty",
        "youtube",
        T0,
        None,
        "tls_blocked",
        "ssl_failed_handshake",
        2,
        T0,
        T0 + timedelta(minutes=5),
    )
    return Episode(**{**base.__dict__, **changes})


def closed(e: Episode) -> Episode:
    end = e.started_at + timedelta(hours=2)
    changes = {"ended_at": end, "offset_after": end, "offset_before": end, "probes": 25}
    return Episode(**{**e.__dict__, **changes})


async def test_episodes_journaled_while_the_database_is_down_arrive_in_their_last_state(
    database_url: str, spool_dir: Path, tmp_path: Path, rows: Any
) -> None:
    down = await Store.open(unreachable(database_url, tmp_path), spool_dir, **SMALL)
    e = episode()
    shutdown = episode(
        target=None, verdict="vantage_down", failure=None, onset_before=T0 + timedelta(hours=3)
    )
    down.submit_episodes([EpisodeEvent("opened", e)])
    down.submit_episodes([EpisodeEvent("updated", Episode(**{**e.__dict__, "probes": 9}))])
    down.submit_episodes([EpisodeEvent("opened", shutdown), EpisodeEvent("closed", closed(e))])
    await down.close()
    assert down.lost == 0 and down.spooled == 4

    up = await Store.open(database_url, spool_dir, **SMALL)
    await up.flush()
    assert up.spooled == 0
    await up.close()
    stored = {(row["target"], row["onset_before"]): row for row in await rows(tables.blackouts)}
    assert len(stored) == 2
    youtube = stored[("youtube", e.onset_before)]
    assert youtube["probes"] == 25 and youtube["ended_at"] == closed(e).ended_at
    assert youtube["local_start"] == "2019-05-20 14:00"  # no zone known to this store: UTC
    assert stored[(None, shutdown.onset_before)]["verdict"] == "vantage_down"


async def test_a_replayed_episode_is_one_row(database_url: str, spool_dir: Path, rows: Any) -> None:
    from probe.store.mapping import encode_episode

    e = episode()
    _, line = encode_episode(e, UTC)
    _, later = encode_episode(closed(e), UTC)
    write_segment(spool_dir, 1, [b"1\t" + line, b"1\t" + later])
    write_segment(spool_dir, 2, [b"2\t" + line, b"2\t" + later])  # the same, replayed
    store = await Store.open(database_url, spool_dir, **SMALL)
    await store.flush()
    await store.close()
    (row,) = await rows(tables.blackouts)
    assert row["ended_at"] == closed(e).ended_at and row["probes"] == 25


async def test_a_wrongly_typed_episode_line_is_set_aside(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    write_segment(spool_dir, 1, [b'1\t{"episode":{"vantage":["kz"],"probes":"many"}}\n'])
    store = await Store.open(database_url, spool_dir, **SMALL)
    store.submit_episodes([EpisodeEvent("opened", episode())])
    await store.flush()
    await store.close()
    assert len(await rows(tables.blackouts)) == 1
    (rejected,) = spool_dir.glob("*.rejected")
    assert b'"probes":"many"' in rejected.read_bytes()
    assert "not a spooled episode" in caplog.text


VICTIM = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from probe.episodes.monitor import Monitor
    from probe.episodes.model import Observation
    from probe.store import Store, blackouts

    async def main(url: str, spool: str) -> None:
        # flush_interval: nothing reaches the database before the kill, only the journal.
        store = await Store.open(url, Path(spool), batch_size=500, flush_interval=3600)
        monitor = Monitor({"kz-almaty": "Asia/Almaty"}, open_after=2)
        t0 = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)
        opened = []
        for i, verdict in enumerate(["ok", "tls_blocked", "tls_blocked"]):
            events = monitor.observe(Observation("kz-almaty", "youtube", t0.replace(minute=i), verdict))
            store.submit_episodes(events)
            opened += [e for e in events if e.kind == "opened"]
        assert opened, "no episode opened"
        await asyncio.sleep(0)  # one turn of the loop: the journal has it
        print("opened", opened[0].episode.onset_before.isoformat(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_kill_9_right_after_an_episode_opened_then_restart_the_episode_is_stored(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", VICTIM, database_url, str(spool_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr
    onset = datetime.fromisoformat(proc.stdout.split()[1])
    assert await rows(tables.blackouts) == []  # the kill came before any database write

    store = await Store.open(database_url, spool_dir, **SMALL)
    await store.flush()
    await store.close()
    (row,) = await rows(tables.blackouts)
    assert (row["vantage"], row["target"], row["onset_before"]) == ("kz-almaty", "youtube", onset)
    assert row["ended_at"] is None and row["verdict"] == "tls_blocked"
    assert row["local_start"].startswith("2019-05-20 14:0")  # no zone given to this store: UTC
