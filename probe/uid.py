"""Measurement ids: RFC 9562 version 7 UUIDs, written as 32 hex digits.

A v7 UUID starts with the Unix time in milliseconds, so ids made later sort later. That is
what keeps the database's unique index on `uid` cheap: each new id goes at the right edge of
the index, where the pages are already in memory and the same few are written at each commit.
Random (v4) ids scatter over the whole index: at a million rows a batch of 500 dirtied ~500
index pages, and SQLite wrote 31 KB per measurement instead of 13 (docs/benchmarks.md). OONI's
measurement_uid is time-ordered for the same reason. Within one millisecond the order is
random (74 random bits), which is still unique and still at the edge.
"""

from __future__ import annotations

import os
import time

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def new_uid(now_ns: int | None = None) -> str:
    """A fresh id: v7 UUID hex, its first 12 digits the time in ms (`now_ns`, default now).

    >>> new_uid(1_560_056_400_000_000_000)[:12]  # 2019-06-09 05:00:00 UTC
    '016b3a9b8880'
    >>> len(new_uid()), new_uid()[12]
    (32, '7')
    """
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10))  # 80 bits: 12 for rand_a, 62 for rand_b (6 unused)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION | (rand >> 68) << 64 | _VARIANT | rand & (1 << 62) - 1
    return f"{value:032x}"
