"""Domain objects <-> rows: the one place that knows both the dataclasses and the tables.

A result becomes a `Row` (column name -> value, as `tables.measurements` wants it) and a spool
line (the same row as one line of tab-separated JSON). The measurement is JSON-encoded once, on
submit, with orjson; the spool line and the database column share those bytes.

`http.body_sample` (up to 4 KB, most of a row) is kept only where it is evidence: on rows whose
verdict is not "ok" (a blockpage, an http-diff). On "ok" rows it is stored as null; the page's
length, hash and title stay.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson
from sqlalchemy import Table

from probe.config import Config, Target, Vantage
from probe.episodes.model import Episode
from probe.episodes.pattern import local_slot
from probe.model import ControlRecord, Measurement, Result, phase_durations
from probe.redaction import redact_url
from probe.store import tables

Row = dict[str, Any]

_dumps: Final = orjson.dumps
_STARTED_FORMAT: Final = "%Y-%m-%d %H:%M:%S"  # Measurement.to_dict's (OONI's) format
_STARTED: Final = "%04d-%02d-%02d %02d:%02d:%02d"  # the same, for the % operator
JSON_COLUMNS: Final = ("observations", "analysis")
"""Held in a row as their encoded JSON (bytes), in the spool line as is."""
_LINE: Final = b"%b\t%b\t%b\n"


def measurement_dict(m: Measurement, *, keep_body_sample: bool = True) -> dict[str, Any]:
    """`m.to_dict()` for orjson: only the top level is copied, the steps stay dataclasses
    (orjson encodes those itself, much faster than `dataclasses.asdict` copies them).

    Only for encoding at once: nested values are shared with `m`. With `keep_body_sample`
    False, ``http.body_sample`` is null. The store's tests hold
    ``orjson.loads(orjson.dumps(...))`` equal to `to_dict()`.
    """
    d = dict(m.__dict__)
    # == at.strftime(_STARTED_FORMAT) in 0.9 us instead of 2.6 (isoformat 1.4, an f-string 1.8)
    at = m.started_at
    d["started_at"] = _STARTED % (at.year, at.month, at.day, at.hour, at.minute, at.second)
    if m.http is not None and not keep_body_sample and m.http.body_sample is not None:
        http = dict(m.http.__dict__)
        http["body_sample"] = None
        d["http"] = http
    if m.throughput is not None:
        t = dict(m.throughput.__dict__)
        t["bps"] = m.throughput.bps
        d["throughput"] = t
    return d


def control_dict(control: ControlRecord) -> dict[str, Any]:
    """The keys a result's control adds to its observations: OONI's `control` (THResponse
    JSON) and `control_failure`, and curfew's `x_control` (where it came from and what else
    the verdict was judged with, for `probe.analysis.replay`)."""
    extra: dict[str, Any] = {
        "role": control.role,
        "source": control.source,
        "controls": list(control.controls),
    }
    if control.peers:
        extra["peers"] = list(control.peers)
    if control.uid is not None:
        extra["uid"] = control.uid
    if control.measurement is not None:
        extra["measurement"] = measurement_dict(control.measurement, keep_body_sample=False)
    return {"control": control.response, "control_failure": control.failure, "x_control": extra}


def observations_json(m: Measurement, verdict: str, control: ControlRecord | None = None) -> bytes:
    """The `observations` column: the measurement as JSON, the body sample only if not "ok",
    and the control it was judged with (`control_dict`), if known."""
    d = measurement_dict(m, keep_body_sample=verdict != "ok")
    if control is not None:
        d.update(control_dict(control))
    return _dumps(d)


def encode(result: Result, zone: tzinfo | None = None) -> tuple[Row, bytes]:
    """The `measurements` row for one result and its spool line (`spool_line(row)`), the
    measurement encoded once for both. `zone` is the vantage's, for `local_day`/`local_hour`
    (NULL without it)."""
    m, a = result.measurement, result.analysis
    phases = phase_durations(m)
    local_day, local_hour = local_slot(m.started_at, zone) if zone is not None else (None, None)
    row: Row = {
        "uid": m.uid,
        "started_at": m.started_at,
        "vantage": m.vantage,
        "target": m.target,
        "url": m.url,
        "verdict": a.verdict,
        "failure": a.failure,
        "operation": a.operation,
        "blocking": a.blocking,
        "dns_s": phases.get("dns"),
        "tcp_connect_s": phases.get("tcp_connect"),
        "tls_handshake_s": phases.get("tls_handshake"),
        "http_first_byte_s": phases.get("http_first_byte"),
        "http_total_s": phases.get("http_total"),
        "runtime_s": m.runtime,
        "throughput_bps": m.throughput.bps if m.throughput is not None else None,
        "tls_issuer": m.tls_issuer,
        "http_status": m.http.status if m.http is not None else None,
        "reason": a.reason,
        "local_day": local_day,
        "local_hour": local_hour,
    }
    observations, analysis = observations_json(m, a.verdict, result.control), _dumps(a)
    line = _LINE % (_dumps(row), observations, analysis)
    row["observations"] = observations
    row["analysis"] = analysis
    return row, line


def result_row(result: Result, zone: tzinfo | None = None) -> Row:
    """The `measurements` row for one result; `observations` and `analysis` as encoded JSON."""
    return encode(result, zone)[0]


def spool_line(row: Row) -> bytes:
    """One line for the spool: three JSON documents separated by tabs, then a newline.

    ``{scalar columns}<TAB>{observations}<TAB>{analysis}``: JSON never contains a raw tab or
    newline, so a replay splits the line and hands the two JSON columns to the database as
    text, without decoding and re-encoding them (`cut -f1 | jq` reads a spool by hand).
    """
    if EPISODE in row:
        return _dumps(row) + b"\n"
    scalars = {k: v for k, v in row.items() if k not in JSON_COLUMNS}  # started_at: RFC 3339
    return _LINE % (_dumps(scalars), row["observations"], row["analysis"])


def line_row(line: bytes) -> Row:
    """The row back from a spool line. Raises ValueError, saying why, on a torn line (no
    newline: the process died in the middle of writing it) or one that is not a spooled
    measurement: every column of the right type and size (`check_row`), and observations and
    analysis JSON objects. What passes can be handed to either database's driver as it is."""
    if not line.endswith(b"\n"):
        raise ValueError("torn line")
    fields = line[:-1].split(b"\t")
    if len(fields) == 1:
        return _episode_line(fields[0])
    if len(fields) != 3:
        raise ValueError(f"not a spooled measurement: {len(fields)} tab-separated fields, not 3")
    row = _json_object(fields[0], "columns")
    for column in JSON_COLUMNS:
        _json_object(fields[JSON_COLUMNS.index(column) + 1], column)
    row.setdefault("local_day", None)  # spooled before the columns existed
    row.setdefault("local_hour", None)
    check_row(row)
    row["observations"] = fields[1]
    row["analysis"] = fields[2]
    return row


def _episode_line(data: bytes) -> Row:
    row = _json_object(data, "columns")
    episode = row.get(EPISODE)
    if len(row) != 1 or not isinstance(episode, dict):
        raise BadValue("not a spooled measurement or episode")
    try:
        check_row(episode, _EPISODE_CHECKS)
    except BadValue as exc:
        raise BadValue(str(exc).replace("spooled measurement", "spooled episode")) from None
    return row


def line_uid(line: bytes) -> str | None:
    """The uid a spool line claims, if one can be read from it (for naming a rejected line)."""
    for part in line.split(b"\t")[:2]:
        try:
            value = orjson.loads(part)
        except orjson.JSONDecodeError:
            continue
        uid = value.get("uid") if isinstance(value, dict) else None
        if isinstance(uid, str) and uid:
            return uid[:64]
    return None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # a ValueError, said plainly
        raise ValueError(f"not a spooled measurement: {what} are not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadValue(f"not a spooled measurement: {what} are not a JSON object")
    return value


def _column_checks(table: Table) -> dict[str, tuple[type, bool, int | None]]:
    """column -> (Python type, nullable, size limit: characters of a string, or the largest
    integer), from the table itself, for the scalar columns of `table`."""
    checks: dict[str, tuple[type, bool, int | None]] = {}
    for column in table.columns:
        if column.name == "id" or column.name in JSON_COLUMNS:
            continue
        # UTCDateTime is a TypeDecorator, whose python_type says nothing: its impl's does.
        kind = getattr(column.type, "impl", column.type).python_type
        limit = getattr(column.type, "length", None)
        if kind is int:
            limit = 2**15 - 1 if "SmallInteger" in type(column.type).__name__ else 2**31 - 1
        checks[column.name] = (kind, bool(column.nullable), limit)
    return checks


class BadValue(ValueError):
    """A line that is whole and well-formed JSON with a column of the wrong type or size:
    never a line torn by a crash, always one to set aside."""


_CHECKS: Final = _column_checks(tables.measurements)
_EPISODE_CHECKS: Final = _column_checks(tables.blackouts)


_MAX_TEXT: Final = 2**62  # "no limit" for a text column, so the fast path needs no None test


def check_row(row: Row, checks: dict[str, tuple[type, bool, int | None]] = _CHECKS) -> None:
    """Raise BadValue (a ValueError) unless `row` (scalar columns as decoded from JSON) holds a
    value of its column's type and size in every column; `started_at` (RFC 3339 text) becomes
    an aware datetime. A wrong type would otherwise reach the driver, whose errors (TypeError,
    sqlite3.ProgrammingError, OverflowError) look like a database that is down.

    The common case (every value right) costs one type test and one bound a column: this runs
    for every row read back from the journal.
    """
    for name, (kind, nullable, limit) in checks.items():
        value: Any = row.get(name)
        t = type(value)
        if t is str:
            if kind is str and len(value) <= (limit or _MAX_TEXT) and "\x00" not in value:
                continue
            if kind is datetime:
                row[name] = _aware(name, value)
                continue
        elif t is float:
            if kind is float:
                continue
        elif t is int:
            if kind is float or (kind is int and -(limit or 0) <= value <= (limit or 0)):
                continue
        elif value is None and nullable:
            continue
        _refuse(name, kind, limit, value)


def _refuse(name: str, kind: type, limit: int | None, value: Any) -> None:
    """Raise BadValue saying what is wrong with `value` in column `name`."""
    what = "not a spooled measurement"
    if value is None:
        raise BadValue(f"{what}: {name} is missing")
    if kind is datetime:
        raise BadValue(f"{what}: {name} is {type(value).__name__}, not a time")
    if kind is str:
        if not isinstance(value, str):
            raise BadValue(f"{what}: {name} is {type(value).__name__}, not text")
        if "\x00" in value:  # PostgreSQL's text cannot hold NUL
            raise BadValue(f"{what}: {name} holds a NUL character")
        raise BadValue(f"{what}: {name} is longer than {limit} characters")
    if type(value) is int:
        raise BadValue(f"{what}: {name} is out of range")
    raise BadValue(f"{what}: {name} is {type(value).__name__}, not a number")


def _aware(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise BadValue(f"not a spooled measurement: {name} is {type(value).__name__}, not a time")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise BadValue(f"not a spooled measurement: {name} is not a time: {value[:40]!r}") from None
    if at.tzinfo is None:
        raise BadValue(f"not a spooled measurement: {name} has no UTC offset")
    return at


EPISODE: Final = "episode"
"""The key of an episode's row in the journal: ``{"episode": {blackouts columns}}``."""


def _local(at: datetime | None, zone: tzinfo) -> str | None:
    return None if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def episode_row(e: Episode, zone: tzinfo) -> Row:
    """The `blackouts` row of `e`, with its local start and end on the vantage's clock."""
    return {
        "vantage": e.vantage,
        "target": e.target,
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "verdict": e.verdict,
        "failure": e.failure,
        "probes": e.probes,
        "onset_after": e.onset_after,
        "onset_before": e.onset_before,
        "offset_after": e.offset_after,
        "offset_before": e.offset_before,
        "local_start": _local(e.started_at, zone),
        "local_end": _local(e.ended_at, zone),
    }


def encode_episode(e: Episode, zone: tzinfo) -> tuple[Row, bytes]:
    """The journal's row for an episode's current state, and its line (one JSON object, no
    tab: a reader tells it from a measurement's three tab-separated documents)."""
    row = {EPISODE: episode_row(e, zone)}
    return row, _dumps(row) + b"\n"


def without_userinfo(url: str | None) -> str | None:
    """A URL with any user name and password removed.

    >>> without_userinfo("socks5://alice:s3cret@203.0.113.7:1080")
    'socks5://203.0.113.7:1080'
    """
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def vantage_row(v: Vantage, now: datetime) -> Row:
    """A `vantages` row: never the proxy's credentials."""
    return {
        "name": v.name,
        "timezone": v.timezone,
        "control": v.control,
        # OONI's identity of the vantage's network travels with its labels (read by the export).
        "labels": {**v.labels, **_network_labels(v)},
        "source_address": v.source_address,
        "resolver": redact_url(v.resolver),
        "proxy": without_userinfo(v.proxy),
        "active": True,
        "first_seen": now,
        "last_seen": now,
    }


def _network_labels(v: Vantage) -> dict[str, str]:
    keys = {"probe_cc": v.probe_cc, "probe_asn": v.probe_asn, "probe_network_name": v.probe_network_name}
    return {key: value for key, value in keys.items() if value is not None}


def target_row(t: Target, now: datetime) -> Row:
    return {
        "name": t.name,
        "url": t.url,
        "throughput_url": t.throughput_url,
        "control": t.control,
        "interval_s": t.interval,
        "labels": dict(t.labels),
        "active": True,
        "first_seen": now,
        "last_seen": now,
    }


def inventory_rows(config: Config, now: datetime) -> tuple[list[Row], list[Row]]:
    """(vantage rows, target rows) for everything configured, seen at `now`."""
    return [vantage_row(v, now) for v in config.vantages], [target_row(t, now) for t in config.targets]
