"""The docs' worked example (docs/ooni.md): a month of one country's OONI measurements of
Facebook and YouTube, made from the spec-shaped builders, not copied from OONI's data.

    .venv/bin/python -m tests.ooni.month docs/examples/ooni-kz-2019-07.jsonl.gz

One network (KZ, AS9198), July 2019, a measurement of each site every hour (Facebook on www.
and m. in turn). What the month holds, in Almaty time (UTC+6 then):
- every evening 20:00-22:00 both sites are cut: Facebook by a reset after the ClientHello,
  YouTube by dropped SYNs;
- from 17 July, Facebook outside those hours gets the "Security Certificate" interception;
- otherwise both load.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.ooni.builders import measurement

START = datetime(2019, 7, 1, tzinfo=UTC) - timedelta(hours=6)  # local midnight, 1 July
DAYS = 31
EVENING_UTC = (14, 15)  # 20:00-22:00 in Almaty
INTERCEPTION_FROM = datetime(2019, 7, 16, 18, tzinfo=UTC)  # 17 July 00:00 local


def month() -> Iterator[dict[str, Any]]:
    for slot in range(DAYS * 24):
        at = START + timedelta(hours=slot)
        evening = at.hour in EVENING_UTC
        for site, minute in (("facebook", 10), ("youtube", 40)):
            when = at + timedelta(minutes=minute)
            if site == "facebook":
                url = "https://www.facebook.com/" if slot % 2 == 0 else "https://m.facebook.com/"
                technique = "tls" if evening else "mitm" if when >= INTERCEPTION_FROM else "ok"
            else:
                url, technique = "https://www.youtube.com/", "tcp" if evening else "ok"
            yield measurement(technique, url=url, start=when.strftime("%Y-%m-%d %H:%M:%S"), serial=slot)


def write(path: Path) -> int:
    count = 0
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        for item in month():
            out.write(json.dumps(item, sort_keys=True).encode() + b"\n")
            count += 1
    return count


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/examples/ooni-kz-2019-07.jsonl.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"{target}: {write(target)} measurements")
