"""hourly_counts: the measurements of each local hour counted on write; hourly_reachability reads
it; the report's index (0004) goes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

The writer adds each batch's counts to `hourly_counts` in the transaction that inserts it
(probe/store/rollup.py), so `curfew report` reads ~43,000 rows for 90 days x 20 series instead
of grouping 2.6 M measurements. The table is filled here from the measurements already there
(one GROUP BY; a few seconds per million rows). `hourly_reachability` keeps its columns and
reads the table. The covering index of 0004 served only the report's GROUP BY and cost every
insert, so it is dropped (downgrade recreates it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

REPORT_INDEX = "ix_measurements_local_day_vantage_target_local_hour_verdict"
BLOCKED = "('dns_blocked', 'tcp_blocked', 'tls_blocked', 'tls_mitm', 'http_blocked', 'throttled')"

FILL = f"""
INSERT INTO hourly_counts (vantage, target, local_day, local_hour, probes, ok, blocked, vantage_down)
SELECT vantage,
       target,
       local_day,
       local_hour,
       SUM(CASE WHEN verdict = 'vantage_down' THEN 0 ELSE 1 END),
       SUM(CASE WHEN verdict = 'ok' THEN 1 ELSE 0 END),
       SUM(CASE WHEN verdict IN {BLOCKED} THEN 1 ELSE 0 END),
       SUM(CASE WHEN verdict = 'vantage_down' THEN 1 ELSE 0 END)
FROM measurements
WHERE local_day IS NOT NULL
  AND local_hour IS NOT NULL
  AND (verdict IN ('ok', 'vantage_down') OR verdict IN {BLOCKED})
GROUP BY vantage, target, local_day, local_hour
"""

HOURLY_REACHABILITY = """
CREATE VIEW hourly_reachability AS
SELECT vantage,
       target,
       local_day,
       local_hour,
       probes,
       ok,
       CAST(ok AS DOUBLE PRECISION) / probes AS ratio
FROM hourly_counts
WHERE probes > 0
"""

# As created by 0003.
HOURLY_REACHABILITY_0003 = f"""
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


def upgrade() -> None:
    op.create_table(
        "hourly_counts",
        sa.Column("vantage", sa.String(63), nullable=False),
        sa.Column("target", sa.String(63), nullable=False),
        sa.Column("local_day", sa.String(10), nullable=False),
        sa.Column("local_hour", sa.SmallInteger(), nullable=False),
        sa.Column("probes", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Integer(), nullable=False),
        sa.Column("vantage_down", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("vantage", "target", "local_day", "local_hour", name="pk_hourly_counts"),
    )
    op.execute(FILL)
    op.execute("DROP VIEW hourly_reachability")
    op.execute(HOURLY_REACHABILITY)
    op.drop_index(REPORT_INDEX, table_name="measurements")


def downgrade() -> None:
    op.create_index(REPORT_INDEX, "measurements", ["local_day", "vantage", "target", "local_hour", "verdict"])
    op.execute("DROP VIEW hourly_reachability")
    op.execute(HOURLY_REACHABILITY_0003)
    op.drop_table("hourly_counts")
