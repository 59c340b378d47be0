"""kill -9 in the middle of writing: the next run writes every measurement exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from probe.store import Store
from tests.store.builders import T0, results

ROOT = Path(__file__).resolve().parents[2]

VICTIM = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from probe.store import Store
    from tests.store.builders import results

    async def main(url: str, spool: str, n: int) -> None:
        store = await Store.open(url, Path(spool), batch_size=100, flush_interval=0.01)
        for i, r in enumerate(results(n)):
            store.submit(r)
            if i % 150 == 0 and i < n // 4:
                await asyncio.sleep(0.01)  # let the writer commit some batches
        # The last three quarters came in one turn of the loop: far more than the writer can
        # commit before the kill, however fast the machine (a fast one used to commit them all).
        await asyncio.sleep(0)  # one turn of the loop: the last submits are journalled
        print("submitted", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_kill_9_then_reopen_writes_each_measurement_once(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    n = 1234
    proc = subprocess.run(
        [sys.executable, "-c", VICTIM, database_url, str(spool_dir), str(n)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr
    assert "submitted" in proc.stdout
    committed_before = len(await rows())
    assert committed_before < n  # the kill left work for the next run
    # A kill in the middle of a write leaves half a line at the end of a segment.
    last = sorted(spool_dir.glob("*.spool"))[-1]
    with last.open("ab") as f:
        f.write(b'{"uid":"torn","started_at":"2019-06-09T05:00:00+00:00"}\t{"vantage":"kz')

    store = await Store.open(database_url, spool_dir)
    assert store.spooled >= n - committed_before
    await store.flush()
    assert store.spooled == 0
    await store.close()

    stored = await rows()
    expected = [r.measurement for r in results(n)]  # same times; uids differ per run
    assert len(stored) == n
    assert len({row["uid"] for row in stored}) == n
    assert [row["started_at"] for row in stored] == [m.started_at for m in expected]
    assert stored[0]["started_at"] == T0
    assert not list(spool_dir.glob("*.spool"))
