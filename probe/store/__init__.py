"""The store: measurements, vantages and targets in SQLite or PostgreSQL.

`Store` (writer.py) is the daemon's only entry point: `submit()` journals each result (and
`submit_episodes()` each episode state) to an on-disk spool and a background task batches the
spool into the database, so nothing is lost while the database is down or when the process
is killed. `tables.py` holds the schema (migrated by Alembic, see `migrate.py`), `mapping.py`
the translation from domain objects to rows (and the checks on rows read back), `rollup.py`
the hourly counts kept on write, `spool.py` the journal and `spool_read.py` reading it back,
`engine.py` URL handling, connection set-up and timeouts, `errors.py` the one mapping of the
drivers' errors to `StoreError`, `events.py` the key=value form of the store's log lines.

The names below are imported on first use, not with the package: `curfew report` imports
`probe.store.report` and should not pay for the writer's asyncio machinery or Alembic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probe.store.engine import StoreError
    from probe.store.migrate import SchemaDrift, check, upgrade
    from probe.store.writer import Store

_WHERE = {
    "SchemaDrift": "probe.store.migrate",
    "Store": "probe.store.writer",
    "StoreError": "probe.store.engine",
    "check": "probe.store.migrate",
    "upgrade": "probe.store.migrate",
}

__all__ = ["SchemaDrift", "Store", "StoreError", "check", "upgrade"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        # Not one of ours: `from probe.store import tables` then imports the submodule.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
