"""The measurements table's columns in insert order, and a row's values in that order: what
both bulk inserters (`bulk` for PostgreSQL, `sqlite_bulk`) build their statements from. On its
own so that neither inserter imports the other."""

from __future__ import annotations

import operator
from typing import Any, Final

from probe.store import tables
from probe.store.mapping import Row

COLUMNS: Final = tuple(c.name for c in tables.measurements.columns if c.name != "id")
STARTED_AT: Final = COLUMNS.index("started_at")
_VALUES: Final = operator.itemgetter(*COLUMNS)


def column_values(row: Row) -> tuple[Any, ...]:
    """The row's values in `COLUMNS` order."""
    try:
        return _VALUES(row)  # type: ignore[no-any-return]
    except KeyError:
        # A column newer than the row (a spool line written before a migration added it)
        # goes in as NULL, as SQLAlchemy's insert would leave it.
        return tuple(row.get(c) for c in COLUMNS)
