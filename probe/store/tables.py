"""The schema: SQLAlchemy 2 declarative tables, the source of truth Alembic's history must match.

One row per measurement, with the columns people filter and plot on (verdict, phase
durations, throughput) broken out, and the whole measurement kept as JSON in `observations`.
`vantage` and `target` name rows of `vantages` and `targets` without a foreign key: a
measurement is journalled and written even before (or after) its vantage is in the inventory.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

NAME_LENGTH = 63  # config.NAME_PATTERN allows at most 63 characters

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, queryable with ->>); JSON text elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")
# The measurement's own JSON is json on PostgreSQL: stored as sent, not parsed into jsonb on
# every insert (the store's hot path; see migrations/versions/0002). ->> works the same.
JsonAsSent = JSON()
# An integer primary key that is SQLite's rowid there and a 64-bit identity on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, always UTC: timestamptz on PostgreSQL, ISO text in UTC on SQLite.

    Aware datetimes are converted to UTC and naive ones are taken as UTC; values read back
    are aware (UTC) on both backends, so text comparisons in SQLite order correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: Json,
        dict[str, str]: Json,
    }


class MeasurementRow(Base):
    """One probe of one (vantage, target): what was seen and the verdict on it."""

    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)
    started_at: Mapped[datetime]
    vantage: Mapped[str] = mapped_column(String(NAME_LENGTH))
    target: Mapped[str] = mapped_column(String(NAME_LENGTH))
    url: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    failure: Mapped[str | None] = mapped_column(Text)
    operation: Mapped[str | None] = mapped_column(String(16))
    blocking: Mapped[str | None] = mapped_column(String(16))
    dns_s: Mapped[float | None] = mapped_column(Double)
    tcp_connect_s: Mapped[float | None] = mapped_column(Double)
    tls_handshake_s: Mapped[float | None] = mapped_column(Double)
    http_first_byte_s: Mapped[float | None] = mapped_column(Double)
    http_total_s: Mapped[float | None] = mapped_column(Double)
    runtime_s: Mapped[float] = mapped_column(Double)
    throughput_bps: Mapped[float | None] = mapped_column(Double)
    tls_issuer: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    observations: Mapped[dict[str, Any]] = mapped_column(JsonAsSent)
    analysis: Mapped[dict[str, Any]] = mapped_column(JsonAsSent)
    # started_at on the vantage's clock (its IANA zone), for hour-of-day SQL that runs on both
    # backends; NULL when the zone was unknown (`curfew analyze --rebuild` fills them in).
    local_day: Mapped[str | None] = mapped_column(String(10))  # YYYY-MM-DD
    local_hour: Mapped[int | None] = mapped_column(SmallInteger)  # 0-23

    __table_args__ = (
        Index(None, "vantage", "target", "started_at"),
        Index(None, "started_at"),
        Index(None, "verdict"),
    )


class VantageRow(Base):
    """A vantage as last configured. The proxy is kept without its credentials."""

    __tablename__ = "vantages"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64))
    control: Mapped[bool] = mapped_column(Boolean)
    labels: Mapped[dict[str, str]]
    source_address: Mapped[str | None] = mapped_column(String(45))
    resolver: Mapped[str] = mapped_column(Text)
    proxy: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class TargetRow(Base):
    """A target as last configured; `interval_s` is its own probe interval, if it has one."""

    __tablename__ = "targets"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    throughput_url: Mapped[str | None] = mapped_column(Text)
    control: Mapped[bool] = mapped_column(Boolean)
    interval_s: Mapped[float | None] = mapped_column(Double)
    labels: Mapped[dict[str, str]]
    active: Mapped[bool] = mapped_column(Boolean)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class BlackoutRow(Base):
    """One blackout episode (probe.episodes.Episode): of a target, or of the whole vantage when
    `target` is NULL. `ended_at` and the offset bounds are NULL while it lasts. Identity:
    (vantage, target, onset_before), the first dark measurement. `local_start`/`local_end` are
    started_at/ended_at on the vantage's clock ("YYYY-MM-DD HH:MM")."""

    __tablename__ = "blackouts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    vantage: Mapped[str] = mapped_column(String(NAME_LENGTH))
    target: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    verdict: Mapped[str] = mapped_column(String(16))
    failure: Mapped[str | None] = mapped_column(Text)
    probes: Mapped[int] = mapped_column(Integer)
    onset_after: Mapped[datetime | None]
    onset_before: Mapped[datetime]
    offset_after: Mapped[datetime | None]
    offset_before: Mapped[datetime | None]
    local_start: Mapped[str] = mapped_column(String(16))
    local_end: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index(None, "vantage", "target", "started_at"),
        Index(None, "vantage", "onset_before"),
        Index(None, "started_at"),
    )


class HourlyCountRow(Base):
    """The measurements of one local hour of one (vantage, target), counted as they are written
    (probe/store/rollup.py): `probes` conclusive ones (ok or blocked), `ok` and `blocked` of
    them, and `vantage_down` probes that found the whole vantage cut off (not in `probes`).
    Inconclusive and target_down measurements are not counted; neither are rows without a
    local day (zone unknown) until `curfew analyze --rebuild` fills it in and recounts."""

    __tablename__ = "hourly_counts"

    vantage: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    target: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    local_day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    local_hour: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 0-23
    probes: Mapped[int] = mapped_column(Integer)
    ok: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[int] = mapped_column(Integer)
    vantage_down: Mapped[int] = mapped_column(Integer)


metadata = Base.metadata
# Core tables for the hot path (bulk inserts need no ORM unit of work).
measurements = cast(Table, MeasurementRow.__table__)
vantages = cast(Table, VantageRow.__table__)
targets = cast(Table, TargetRow.__table__)
blackouts = cast(Table, BlackoutRow.__table__)
hourly_counts = cast(Table, HourlyCountRow.__table__)
