"""A country's time zone for imported vantages: OONI says where (probe_cc), not which zone.

The system's tz database lists each country's zones (zone.tab), most populous first; the first
is the vantage's default zone (KZ: Asia/Almaty). `--timezone` overrides it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

ZONE_TABLES: Final = (Path("/usr/share/zoneinfo/zone.tab"), Path("/usr/share/zoneinfo/zone1970.tab"))


@cache
def _table() -> dict[str, str]:
    first: dict[str, str] = {}
    for path in ZONE_TABLES:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("#") or not line.strip():
                continue
            columns = line.split("\t")
            if len(columns) >= 3:
                for cc in columns[0].split(","):
                    first.setdefault(cc.upper(), columns[2])
    return first


def country_zone(cc: str) -> str:
    """The main IANA zone of country `cc`, or UTC when unknown.

    >>> country_zone("ZZ")
    'UTC'
    """
    return _table().get(cc.upper(), "UTC")
