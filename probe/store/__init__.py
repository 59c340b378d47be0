"""The store: measurements, vantages and targets in SQLite or PostgreSQL.

`Store` (writer.py) is the daemon's only entry point: `submit()` journals each result to an
on-disk spool and a background task batches the spool into the database, so nothing is lost
while the database is down or when the process is killed. `tables.py` holds the schema
(migrated by Alembic, see `migrate.py`), `mapping.py` the translation from domain objects to
rows, `spool.py` the journal and `engine.py` URL handling and connection set-up.
"""

from probe.store.engine import StoreError
from probe.store.migrate import SchemaDrift, check, upgrade
from probe.store.writer import Store

__all__ = ["SchemaDrift", "Store", "StoreError", "check", "upgrade"]
