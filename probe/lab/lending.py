"""Control measurements that one simulation group lends to the groups after it.

A verdict needs controls of the same moment: the control targets at the pair's vantage, the
pair's target at the control vantage (`probe.daemon.prober`). When the simulation's pairs are
split into groups (`probe.lab.simulate.groups_of`), a control often belongs to another group.
Measuring it again would be work the daemon never does. So an earlier group lends what it
measured, and a later group borrows it.

- A group writes its `Ledger` as it goes. After each instant it writes the control measurements
  it made, then the instant before which it will start no other: its next instant.
- A later group reads the ledgers of all the groups before it (`Loans`). Before measuring a
  control itself, it takes the latest one an earlier group started at most `max_age` seconds
  before now. If an earlier group has not got that far yet (the groups run side by side
  under `--jobs`), it waits.

Lending only goes from earlier groups to later ones, and each process runs its groups in
order, so nothing waits in a circle. The groups may run one after another in one process as
well. What a group borrows depends only on what the earlier groups measured, never on how fast
they ran, so the measurements are the same whatever `--jobs`.

A ledger is a file of records, each an 8-byte length and a pickle of
``(until, [Measurement, ...])``. The last record has ``until`` = infinity: the group is done,
or stopped, or failed.
"""

from __future__ import annotations

import math
import pickle
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from probe.model import Measurement

_LENGTH = struct.Struct("!Q")
DONE = math.inf
POLL = 0.0005
"""Seconds between two looks at an earlier group's ledger that has not got far enough."""
KEPT = 60.0
"""Seconds a lent measurement is kept after the latest instant asked about: the longest a
`Prober` shares a control (`control_max_age` is at most a minute)."""

Pair = tuple[str, str]


def ledger_path(directory: Path, index: int) -> Path:
    return directory / f"group{index}.ledger"


def clear(directory: Path) -> None:
    """An empty ledger directory: a run must never read a ledger left by an earlier one."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class Ledger:
    """What one group lends, written as it measures."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("xb")  # a fresh directory: never anyone else's file

    def lend(self, measurements: Iterable[Measurement], until: float) -> None:
        """Add `measurements` and say that every measurement this group starts before `until`
        has now been written."""
        body = pickle.dumps((until, list(measurements)), protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(_LENGTH.pack(len(body)) + body)
        self._file.flush()

    def close(self) -> None:
        """The group lends nothing more (done, stopped or failed): nobody waits for it."""
        if not self._file.closed:
            try:
                self.lend((), DONE)
            finally:
                self._file.close()


class _Reader:
    """One earlier group's ledger, read a record at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None
        self._buffer = bytearray()
        self.until = -math.inf

    def next_record(self) -> tuple[float, list[Measurement]] | None:
        """The next whole record, or None when the group has not written it yet."""
        if self._file is None:
            try:
                self._file = self._path.open("rb")
            except FileNotFoundError:
                return None  # its group has not started
        while True:
            if len(self._buffer) >= _LENGTH.size:
                (size,) = _LENGTH.unpack_from(self._buffer)
                end = _LENGTH.size + size
                if len(self._buffer) >= end:
                    until, measurements = pickle.loads(self._buffer[_LENGTH.size : end])
                    del self._buffer[:end]
                    self.until = until
                    return until, measurements
            chunk = self._file.read(1 << 20)
            if not chunk:
                return None
            self._buffer += chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Loans:
    """The control measurements the earlier groups lend, read only as far as needed."""

    def __init__(
        self, paths: Sequence[Path], poll: float = POLL, stopped: Callable[[], bool] = lambda: False
    ) -> None:
        self._readers = [_Reader(p) for p in paths]
        self._poll = poll
        self._stopped = stopped
        self._now = -math.inf
        self._lent: dict[Pair, list[tuple[float, int, Measurement]]] = {}

    def ready(self, now: float) -> None:
        """Wait until every earlier group has lent all it starts up to `now` (inclusive), or
        until `stopped()` (the run is being stopped: what is not lent by then is measured)."""
        self._now = max(self._now, now)
        for rank, reader in enumerate(self._readers):
            while reader.until <= now:
                record = reader.next_record()
                if record is None:
                    if self._stopped():
                        return
                    time.sleep(self._poll)
                    continue
                for m in record[1]:
                    self._keep(m, rank)

    def _keep(self, m: Measurement, rank: int) -> None:
        kept = self._lent.setdefault((m.vantage, m.target), [])
        oldest = self._now - KEPT
        kept[:] = [e for e in kept if e[0] >= oldest]
        kept.append((m.started_at.timestamp(), rank, m))

    def fresh(self, vantage: str, target: str, now: float, max_age: float) -> Measurement | None:
        """The latest measurement of the pair an earlier group started in [now - max_age,
        now] (the earliest group's when two started at once), or None."""
        self.ready(now)
        usable = [e for e in self._lent.get((vantage, target), ()) if now - max_age <= e[0] <= now]
        if not usable:
            return None
        return max(usable, key=lambda e: (e[0], -e[1]))[2]

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
