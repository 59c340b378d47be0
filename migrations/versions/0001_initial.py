"""The initial schema: measurements, vantages, targets.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Types are spelled out here rather than imported from probe.store.tables, so this revision
keeps meaning the same thing when the code moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)  # UTC; tables.UTCDateTime converts on the way in and out
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "measurements",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("vantage", sa.String(63), nullable=False),
        sa.Column("target", sa.String(63), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("operation", sa.String(16), nullable=True),
        sa.Column("blocking", sa.String(16), nullable=True),
        sa.Column("dns_s", sa.Double(), nullable=True),
        sa.Column("tcp_connect_s", sa.Double(), nullable=True),
        sa.Column("tls_handshake_s", sa.Double(), nullable=True),
        sa.Column("http_first_byte_s", sa.Double(), nullable=True),
        sa.Column("http_total_s", sa.Double(), nullable=True),
        sa.Column("runtime_s", sa.Double(), nullable=False),
        sa.Column("throughput_bps", sa.Double(), nullable=True),
        sa.Column("tls_issuer", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("observations", JSON, nullable=False),
        sa.Column("analysis", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_measurements"),
        sa.UniqueConstraint("uid", name="uq_measurements_uid"),
    )
    op.create_index(
        "ix_measurements_vantage_target_started_at", "measurements", ["vantage", "target", "started_at"]
    )
    op.create_index("ix_measurements_started_at", "measurements", ["started_at"])
    op.create_index("ix_measurements_verdict", "measurements", ["verdict"])
    if op.get_bind().dialect.name == "postgresql":
        # observations (~5 KB) is TOASTed: lz4 instead of the default pglz makes ingest ~1.5x
        # faster (bench/store_ingest.py). Servers built without lz4, or before 14, keep pglz.
        op.execute(
            """
            DO $$ BEGIN
                EXECUTE 'ALTER TABLE measurements ALTER COLUMN observations SET COMPRESSION lz4';
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'lz4 compression unavailable, keeping the default: %', SQLERRM;
            END $$
            """
        )

    op.create_table(
        "vantages",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("source_address", sa.String(45), nullable=True),
        sa.Column("resolver", sa.Text(), nullable=False),
        sa.Column("proxy", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("first_seen", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_vantages"),
    )
    op.create_table(
        "targets",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("throughput_url", sa.Text(), nullable=True),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.Column("interval_s", sa.Double(), nullable=True),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("first_seen", TIMESTAMP, nullable=False),
        sa.Column("last_seen", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_targets"),
    )


def downgrade() -> None:
    op.drop_table("targets")
    op.drop_table("vantages")
    op.drop_index("ix_measurements_verdict", table_name="measurements")
    op.drop_index("ix_measurements_started_at", table_name="measurements")
    op.drop_index("ix_measurements_vantage_target_started_at", table_name="measurements")
    op.drop_table("measurements")
