"""Who may hold a connection to the metrics port: the limits, the descriptors left, the victim.

The policy half of `probe.metrics.server` (which owns the sockets): what a connection may take
from the daemon, how many descriptors are free, and which connection gives way to a newcomer
when the server is full. `choose_victim` is pure, with the time passed in.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

RESERVE_MIN: Final = 64
RESERVE_MAX: Final = 1024
"""A burst of probes needs a few descriptors each: at 1,024 free, the server's 32 are no threat,
and under the unit's LimitNOFILE=65536 a busy prober may use the other 64,000 without pausing it."""
STALL_EVICT: Final = 1.0
"""A response the client has not read from for this long may be dropped for a newcomer when the
server is full: a scraper reads as fast as the server writes; a client that does not read is
not scraping."""


@dataclass(frozen=True)
class Limits:
    """What one local client (or many) may take from the daemon through the metrics port."""

    max_connections: int = 32
    """Prometheus keeps one connection per target; a few scrapers and curl fit many times over."""
    reserve: int | None = None
    """Descriptors kept free for everything else (probes, store, journal): accepting stops below
    this. None: a quarter of the soft RLIMIT_NOFILE, at least 64 and at most `RESERVE_MAX`."""
    idle_timeout: float = 75.0
    """A kept-alive connection may wait this long for its next request (above a 60 s scrape
    interval, so Prometheus' connection survives between scrapes)."""
    head_timeout: float = 10.0
    """Seconds from the first byte of a request to the end of its head."""
    write_timeout: float = 10.0
    """Seconds a response may go without the client taking any of it."""
    response_timeout: float = 120.0
    """Seconds to send one whole response (a 10,000-pair exposition takes a few)."""
    max_requests: int = 1000
    """Requests served on one connection before it is closed (the scraper reconnects)."""

    def reserved(self) -> int:
        if self.reserve is not None:
            return self.reserve
        soft = soft_nofile()
        return RESERVE_MIN if soft is None else max(RESERVE_MIN, min(soft // 4, RESERVE_MAX))


def soft_nofile() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def free_descriptors() -> int | None:
    """How many more descriptors this process may open, or None if it cannot tell (no /proc)."""
    soft = soft_nofile()
    if soft is None:
        return None
    try:
        used = len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError as exc:
        # Out of descriptors, the listing itself cannot open one: that answers the question.
        return 0 if exc.errno in (errno.EMFILE, errno.ENFILE) else None
    return soft - used


@dataclass
class Slot:
    """What the policy knows of a connection: since when it has waited for a request (idle), or
    for its client to read what was sent (stalled); None while neither."""

    idle_since: float | None = None
    stalled_since: float | None = None


def choose_victim(slots: Iterable[Slot], now: float) -> Slot | None:
    """The connection to drop for a newcomer: the one idle the longest, else the one whose client
    has not read for the longest, if for `STALL_EVICT` seconds at least; else None.

    >>> a, b = Slot(idle_since=5.0), Slot(stalled_since=1.0)
    >>> choose_victim([a, b], now=10.0) is a
    True
    >>> choose_victim([b], now=1.5) is None
    True
    """
    slots = list(slots)
    idle = [s for s in slots if s.idle_since is not None]
    if idle:
        return min(idle, key=lambda s: s.idle_since or 0.0)
    stalled = [s for s in slots if s.stalled_since is not None and s.stalled_since <= now - STALL_EVICT]
    return min(stalled, key=lambda s: s.stalled_since or 0.0, default=None)


class FreeDescriptors:
    """`free_descriptors()`, counted at most every `every` seconds.

    Counting lists /proc/self/fd, ~2.5 us per open descriptor (12 ms at 5,000): too much for
    every accept on the event loop. Between counts, each descriptor the server takes lowers the
    estimate, and a descriptor's number bounds it too (a new descriptor gets the lowest free
    number, so every number below it is in use).
    """

    def __init__(self, every: float = 1.0, count: Callable[[], int | None] = free_descriptors) -> None:
        self.every = every
        self._count = count
        self._at: float | None = None
        self._value: int | None = None

    def __call__(self, now: float) -> int | None:
        if self._at is None or now - self._at >= self.every:
            self._value = self._count()
            self._at = now
        return self._value

    def took(self, fd: int) -> None:
        """The server just opened descriptor number `fd`."""
        soft = soft_nofile()
        if self._value is None or soft is None:
            return
        self._value = min(self._value - 1, soft - fd - 1)
