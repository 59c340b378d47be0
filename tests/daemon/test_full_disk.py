"""`curfew run` on a data_dir whose disk fills up while the database does not answer: the
metrics say what is only in memory, the stop names what could not be kept and exits 1, and
`spooled=` counts only what the next start will find."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from probe.store.spool_read import read_segment
from tests.daemon.harness import Daemon, metric
from tests.daemon.test_failures import GRACE, offline_config, stop_within


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "curfew.yaml", {})
    try:
        yield d
    finally:
        await d.kill()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "data"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)],
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


@pytest.fixture
def black_hole() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def fill(disk: Path) -> None:
    """Take every free block of `disk`."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)


async def test_a_disk_that_fills_up_is_said_in_metrics_and_the_stop_names_what_was_lost(
    daemon: Daemon, tmp_path: Path, small_disk: Path, black_hole: int
) -> None:
    database = f"postgresql://curfew:secret@127.0.0.1:{black_hole}/curfew"
    daemon.write(offline_config(tmp_path, database, data_dir=str(small_disk)))
    await daemon.start(ready_timeout=30)
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 2, 30, "probing")
    fill(small_disk)

    async def held_in_memory() -> bool:
        return (metric(await daemon.scrape(), "curfew_unjournaled_measurements") or 0) >= 3

    await daemon.wait_for(held_in_memory, 40, "measurements held in memory")
    samples = await daemon.scrape()
    assert (metric(samples, "curfew_journal_write_errors_total") or 0) >= 1

    assert await stop_within(daemon, GRACE + 30) == 1
    (lost,) = [line for line in daemon.lines if "event=measurements-lost " in line]
    count = int(re.search(r"count=(\d+)", lost)[1])  # type: ignore[index]
    named = set(lost.split("uids=", 1)[1].split()[0].split(","))
    assert count >= 3 and len(named) == count
    spool = small_disk / "spool"
    kept = [row for p in spool.glob("*.spool") for row in read_segment(p, int(p.stem)).rows]
    on_disk = {row["uid"] for row in kept if "uid" in row}  # measurements (episodes have none)
    assert not named & on_disk
    (stopped,) = [line for line in daemon.lines if "event=stopped " in line]
    assert f"spooled={len(kept)}" in stopped
    assert len(on_disk) + count == len(daemon.measurement_lines())
