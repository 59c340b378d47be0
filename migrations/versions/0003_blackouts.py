"""Blackout episodes and hour-of-day SQL: the blackouts table, measurements.local_day and
local_hour, and the views hourly_reachability and blackout_episodes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

local_day/local_hour are added as NULL for the rows already there (adding a column is
instant on both backends; computing them needs the vantage's zone, in Python): run
``curfew analyze --rebuild`` once to fill them in and to build the episodes of the history.
The views are part of the schema, so they are created (and changed) here, in SQL that gives
the same columns on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)  # UTC; tables.UTCDateTime converts on the way in and out
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BLOCKED = "('dns_blocked', 'tcp_blocked', 'tls_blocked', 'tls_mitm', 'http_blocked', 'throttled')"

HOURLY_REACHABILITY = f"""
CREATE VIEW hourly_reachability AS
SELECT vantage,
       target,
       local_day,
       local_hour,
       COUNT(*) AS probes,
       SUM(CASE WHEN verdict = 'ok' THEN 1 ELSE 0 END) AS ok,
       CAST(SUM(CASE WHEN verdict = 'ok' THEN 1 ELSE 0 END) AS DOUBLE PRECISION) / COUNT(*) AS ratio
FROM measurements
WHERE local_day IS NOT NULL
  AND (verdict = 'ok' OR verdict IN {BLOCKED})
GROUP BY vantage, target, local_day, local_hour
"""

DURATION = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM (ended_at - started_at)) AS DOUBLE PRECISION)",
    "sqlite": "ROUND((julianday(ended_at) - julianday(started_at)) * 86400.0, 3)",
}


def blackout_episodes(dialect: str) -> str:
    return f"""
CREATE VIEW blackout_episodes AS
SELECT id,
       CASE WHEN target IS NULL THEN 'vantage' ELSE 'target' END AS scope,
       vantage,
       target,
       started_at,
       ended_at,
       {DURATION[dialect]} AS duration_s,
       local_start,
       local_end,
       verdict,
       failure,
       probes,
       onset_after,
       onset_before,
       offset_after,
       offset_before
FROM blackouts
"""


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("local_day", sa.String(10), nullable=True))
        batch.add_column(sa.Column("local_hour", sa.SmallInteger(), nullable=True))
    op.create_table(
        "blackouts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("vantage", sa.String(63), nullable=False),
        sa.Column("target", sa.String(63), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("probes", sa.Integer(), nullable=False),
        sa.Column("onset_after", TIMESTAMP, nullable=True),
        sa.Column("onset_before", TIMESTAMP, nullable=False),
        sa.Column("offset_after", TIMESTAMP, nullable=True),
        sa.Column("offset_before", TIMESTAMP, nullable=True),
        sa.Column("local_start", sa.String(16), nullable=False),
        sa.Column("local_end", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_blackouts"),
    )
    op.create_index(
        "ix_blackouts_vantage_target_started_at", "blackouts", ["vantage", "target", "started_at"]
    )
    op.create_index("ix_blackouts_vantage_onset_before", "blackouts", ["vantage", "onset_before"])
    op.create_index("ix_blackouts_started_at", "blackouts", ["started_at"])
    op.execute(HOURLY_REACHABILITY)
    op.execute(blackout_episodes(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW blackout_episodes")
    op.execute("DROP VIEW hourly_reachability")
    op.drop_index("ix_blackouts_started_at", table_name="blackouts")
    op.drop_index("ix_blackouts_vantage_onset_before", table_name="blackouts")
    op.drop_index("ix_blackouts_vantage_target_started_at", table_name="blackouts")
    op.drop_table("blackouts")
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("local_hour")
        batch.drop_column("local_day")
