"""The ready queries in docs/sql.md run, unchanged, on SQLite and PostgreSQL and say the same."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from probe.store import Store
from probe.store.engine import create_engine
from tests.store.builders import T0, result

QUERIES = re.findall(r"```sql\n(.*?)```", (Path(__file__).parents[2] / "docs" / "sql.md").read_text(), re.S)


def test_docs_have_the_ready_queries() -> None:
    assert len(QUERIES) == 7  # four on measurements, then three on blackouts (test_blackouts.py)


async def test_ready_queries(database_url: str, tmp_path: Path) -> None:
    store = await Store.open(database_url, tmp_path / "spool")
    # facebook: ok at 05:00, blocked 05:01-05:02 (two probes in 05:02), ok again; youtube: ok.
    for minute, verdict in [
        (0, "ok"),
        (1, "tls_blocked"),
        (2, "tls_blocked"),
        (2.5, "tls_blocked"),
        (3, "ok"),
    ]:
        store.submit(result(verdict, started_at=T0 + timedelta(minutes=minute)))
    store.submit(result(target="youtube", started_at=T0 + timedelta(minutes=1)))
    await store.close()

    engine = create_engine(database_url)
    async with engine.connect() as conn:
        latest, per_day, failures, hours = [
            [tuple(row) for row in (await conn.execute(text(q))).all()] for q in QUERIES[:4]
        ]
    await engine.dispose()

    assert [(v, t, verdict) for v, t, verdict, *_ in latest] == [
        ("kz-kazakhtelecom", "facebook", "ok"),
        ("kz-kazakhtelecom", "youtube", "ok"),
    ]
    assert [(d, t, minutes, float(share)) for d, _, t, minutes, share in per_day] == [
        ("2019-06-09", "facebook", 2, 0.6),
        ("2019-06-09", "youtube", 0, 0.0),
    ]
    assert [(op, f, v, int(n)) for op, f, v, n in failures] == [
        ("tls_handshake", "connection_reset", "tls_blocked", 3)
    ]
    assert [(t, h, int(n), float(s)) for t, h, n, s in hours] == [
        ("facebook", "05", 5, 0.6),
        ("youtube", "05", 1, 0.0),
    ]
