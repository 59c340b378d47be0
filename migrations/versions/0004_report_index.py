"""An index for `curfew report`: (local_day, vantage, target, local_hour, verdict).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The report counts measurements per (vantage, target, local day, local hour, verdict) over a
range of local days. This index covers that query: the range is a seek and the rows come out
in GROUP BY order, so SQLite counts without touching the table or sorting. Over 2.6 M rows
(90 days x 20 series, one a minute) that is ~0.75 s on one core instead of ~6.5 s with a scan of
the table and a temporary B-tree (bench/report_speed.py). Building it on an existing database
takes a few seconds per million rows; it makes each insert slightly dearer.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

NAME = "ix_measurements_local_day_vantage_target_local_hour_verdict"


def upgrade() -> None:
    op.create_index(NAME, "measurements", ["local_day", "vantage", "target", "local_hour", "verdict"])


def downgrade() -> None:
    op.drop_index(NAME, table_name="measurements")
