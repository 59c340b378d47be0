"""Judge every stored measurement again from its observations (`curfew analyze --rebuild --rejudge`).

Each row's `observations` keeps the control it was judged with (see `mapping.control_dict`),
so `probe.analysis.replay.rejudge` can run the current analysis on it. The control targets and
peers a row names were measured within a minute of it (the daemon shares controls younger than
`Prober.control_max_age`, at most 60 s), so rows are read in windows of started_at with a
margin on both sides to find them, never the whole table at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

import orjson
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from probe.analysis.fingerprints import Fingerprints, default_fingerprints
from probe.analysis.replay import rejudge
from probe.ooni.judge import is_imported, rejudge_stored
from probe.store import tables

WINDOW: Final = timedelta(minutes=10)
MARGIN: Final = timedelta(minutes=2)
"""How far from a row its control targets and peers may have started."""

m = tables.measurements


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def rejudge_all(conn: AsyncConnection, fingerprints: Fingerprints | None = None) -> tuple[int, int]:
    """Judge every measurement again; update the rows whose analysis changed.

    Returns (rows judged, rows changed).
    """
    fps = fingerprints if fingerprints is not None else default_fingerprints()
    first, last = (await conn.execute(select(func.min(m.c.started_at), func.max(m.c.started_at)))).one()
    if first is None:
        return 0, 0
    stmt = (
        update(m)
        .where(m.c.id == bindparam("row_id"))
        .values(
            verdict=bindparam("verdict"),
            failure=bindparam("failure"),
            operation=bindparam("operation"),
            blocking=bindparam("blocking"),
            reason=bindparam("reason"),
            analysis=bindparam("new_analysis"),
        )
    )
    judged = changed = 0
    start = first
    while start <= last:
        end = start + WINDOW
        query = (
            select(m.c.id, m.c.uid, m.c.started_at, m.c.observations, m.c.analysis)
            .where(m.c.started_at >= start - MARGIN, m.c.started_at < end + MARGIN)
            .order_by(m.c.started_at, m.c.id)
        )
        rows = (await conn.execute(query)).all()
        lookup = {row.uid: _json(row.observations) for row in rows}
        updates = []
        for row in rows:
            if not start <= row.started_at < end:
                continue
            stored = lookup[row.uid]
            # An imported OONI measurement is judged by the import's rules (its control is the
            # test helper's answer; no control target was stored with it).
            analysis = rejudge_stored(stored, fps) if is_imported(stored) else rejudge(stored, lookup, fps)
            judged += 1
            encoded = orjson.dumps(analysis)
            if orjson.loads(encoded) == _json(row.analysis):
                continue
            updates.append(
                {
                    "row_id": row.id,
                    "verdict": analysis.verdict,
                    "failure": analysis.failure,
                    "operation": analysis.operation,
                    "blocking": analysis.blocking,
                    "reason": analysis.reason,
                    "new_analysis": encoded,
                }
            )
        if updates:
            await conn.execute(stmt, updates)
            changed += len(updates)
        start = end
    return judged, changed
