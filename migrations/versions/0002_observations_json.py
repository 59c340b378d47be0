"""observations and analysis as json, not jsonb, on PostgreSQL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

jsonb parses every row into its binary form on the way in: with ~4.5 KB of observations
that was most of the server's time per row (bench/store_ingest.py: 5,250 -> 8,700
measurements/s on the same machine). json stores the text as sent (it is still validated) and
answers the same operators people use here (->, ->>, #>>, json_array_elements); what it gives
up is containment (@>) and GIN indexes, which no documented query uses. Nothing changes on
SQLite, where both are JSON text.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

COLUMNS = ("observations", "analysis")


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE measurements "
        + ", ".join(f"ALTER COLUMN {c} TYPE {to} USING {c}::text::{to}" for c in COLUMNS)
    )
    # The rewrite keeps the column's compression; said again for servers where 0001 could not.
    op.execute(
        """
        DO $$ BEGIN
            EXECUTE 'ALTER TABLE measurements ALTER COLUMN observations SET COMPRESSION lz4';
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'lz4 compression unavailable, keeping the default: %', SQLERRM;
        END $$
        """
    )


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")
