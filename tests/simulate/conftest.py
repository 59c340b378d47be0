"""Small scenarios for simulations, and reading back what a simulation stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from probe.lab import Scenario, parse_scenario

CENSORED = "127.0.0.2"
CONTROL = "127.0.0.9"


def evening(timezone: str = "UTC", daily: str = "20:00-22:00") -> Scenario:
    """One censored vantage and a control; `site` is TLS-reset daily in `timezone`."""
    return parse_scenario(
        {
            "name": "evening",
            "timezone": timezone,
            "dns": {"listen": "127.0.0.1:0"},
            "vantages": [
                {"name": "censored", "address": CENSORED},
                {"name": "control", "address": CONTROL, "control": True},
            ],
            "targets": [
                {"name": "site", "hosts": ["site.lab"], "address": "127.0.4.1", "port": 0, "bulk": False},
                {
                    "name": "wiki",
                    "hosts": ["wiki.lab"],
                    "address": "127.0.4.2",
                    "port": 0,
                    "bulk": False,
                    "control": True,
                },
            ],
            "rules": [
                {
                    "action": "tls_reset",
                    "vantages": ["censored"],
                    "targets": ["site"],
                    "when": {"daily": daily},
                }
            ],
        }
    )


def rows(db: Path, sql: str = "SELECT * FROM measurements ORDER BY started_at, id") -> list[dict[str, Any]]:
    """Rows of a simulated SQLite database as dicts (started_at as stored: UTC text)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]
