"""Regenerate probe/data/fingerprints.yaml from ooni/blocking-fingerprints CSV files.

    .venv/bin/python bench/fingerprints_import.py fingerprints_http.csv fingerprints_dns.csv

Reads the CSVs by column name (name, scope, location_found, pattern_type, pattern,
expected_countries; other columns are ignored, so a trimmed copy works too), keeps the
bundled file's lab_* rows and any bundled row the CSVs do not name, and rewrites the YAML
with its header comment. A regexp Python's `re` cannot compile is dropped and printed, so
the loader never sees it. Not a benchmark: it lives here because bench/ holds dev tools.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path
from typing import Any

import yaml

YAML_PATH = Path(__file__).resolve().parent.parent / "probe" / "data" / "fingerprints.yaml"
# Upstream rows left out on purpose, with the reason (also stated in the YAML header).
EXCLUDED = {
    # "127.0.0.1 is a blocking answer" (vbw) would make every lab measurement dns_blocked: the
    # lab's targets resolve to loopback. Loopback answers are already judged as bogons.
    "cl.dns_br_localhost": "127.0.0.1 is the lab's own answer",
}
FIELDS = ("name", "scope", "location", "pattern_type", "pattern", "expected_countries")


def rows_from_csv(path: Path) -> list[dict[str, Any]]:
    """The CSV's rows in the loader's field names; expected_countries split on commas."""
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for raw in csv.DictReader(fh):
            countries = [c.strip() for c in (raw.get("expected_countries") or "").split(",")]
            out.append(
                {
                    "name": raw["name"].strip(),
                    "scope": raw["scope"].strip(),
                    "location": raw["location_found"].strip(),
                    "pattern_type": raw["pattern_type"].strip(),
                    # The CSV keeps exact bytes: a leading space in a pattern is significant.
                    "pattern": raw["pattern"],
                    "expected_countries": [c for c in countries if c],
                }
            )
    return out


def _compiles(row: dict[str, Any]) -> str | None:
    if row["pattern_type"] != "regexp":
        return None
    try:
        re.compile(row["pattern"])
    except re.error as exc:
        return str(exc)
    return None


def header_of(text: str) -> str:
    """The leading comment block of the bundled YAML, up to the `fingerprints:` key."""
    head, _, _ = text.partition("fingerprints:")
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path)
    parser.add_argument("--yaml", type=Path, default=YAML_PATH)
    args = parser.parse_args(argv)

    text = args.yaml.read_text(encoding="utf-8")
    bundled = yaml.safe_load(text)["fingerprints"]
    imported: list[dict[str, Any]] = []
    taken: set[str] = set()
    for path in args.csv:
        for row in rows_from_csv(path):
            if row["name"] in EXCLUDED:
                print(f"excluded {row['name']}: {EXCLUDED[row['name']]}", file=sys.stderr)
                continue
            error = _compiles(row)
            if error is not None:
                print(f"dropped {row['name']}: regexp does not compile: {error}", file=sys.stderr)
                continue
            if row["name"] in taken:
                # Upstream reuses a name for a second, different pattern; keep both rows.
                n = 2
                while f"{row['name']}.{n}" in taken:
                    n += 1
                print(f"renamed a second {row['name']} to {row['name']}.{n}", file=sys.stderr)
                row["name"] = f"{row['name']}.{n}"
            taken.add(row["name"])
            imported.append(row)
    names = {row["name"] for row in imported}
    kept = [row for row in bundled if row["name"] not in names]
    rows = kept + imported
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["name"] in seen:
            print(f"dropped a second {row['name']}: duplicate name", file=sys.stderr)
            continue
        seen.add(row["name"])
        unique.append({key: row[key] for key in FIELDS if key in row})
    body = yaml.safe_dump(
        {"fingerprints": unique}, allow_unicode=True, sort_keys=False, width=1000, default_flow_style=None
    )
    args.yaml.write_text(header_of(text) + body, encoding="utf-8")
    print(f"{len(kept)} bundled rows kept, {len(imported)} imported, {len(unique)} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
