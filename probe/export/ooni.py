"""Stored measurements as OONI measurements: the df-000 envelope around Web Connectivity test
keys (`ooni_keys`), one JSON object per line, readable by OONI's tools (`oonidata`).

`ooni_record` is pure: one `measurements` row (its `observations` JSON is the whole
measurement and the control it was judged with, its `analysis` JSON the verdict) and the
vantage's labels in, one OONI measurement out. `records` streams rows from the database;
a row whose stored JSON is corrupt is skipped and named (`on_skip`), never fatal.

The envelope:
- measurement_start_time / test_start_time: ``started_at`` as "YYYY-MM-DD hh:mm:ss" UTC;
- probe_cc / probe_asn / probe_network_name: the vantage's `probe_cc`, `probe_asn`,
  `probe_network_name` config keys (kept in the inventory's labels); without them "ZZ" / "AS0"
  (OONI's unknown) and one warning per vantage;
- report_id: OONI's shape ``YYYYMMDDThhmmssZ_webconnectivity_CC_ASN_n1_<16 letters>``, one per
  vantage and UTC day (the letters derived from both, so a re-export gives the same ids);
- test_helpers: where the control came from; annotations: platform, engine_name,
  engine_version, and curfew's vantage and target under ``x_`` keys;
- test_version: the classic Web Connectivity's (these are classic 0.4 test keys).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, TextIO

from sqlalchemy import Text, select, type_coerce

from probe import SOFTWARE_NAME, __version__
from probe.export.ooni_keys import test_keys
from probe.redaction import redact_url
from probe.store import tables
from probe.store.engine import create_engine
from probe.store.errors import database_errors

log = logging.getLogger(__name__)

DATA_FORMAT_VERSION: Final = "0.2.0"
TEST_NAME: Final = "web_connectivity"
TEST_VERSION: Final = "0.4.3"
"""The classic algorithm's version: the test keys follow ts-017's classic layout."""
OONI_TIME: Final = "%Y-%m-%d %H:%M:%S"
DEFAULT_ASN: Final = "AS0"
DEFAULT_CC: Final = "ZZ"
_CC: Final = re.compile(r"^[A-Z]{2}$")
_ASN: Final = re.compile(r"^AS[0-9]{1,10}$")
_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class CorruptRow(ValueError):
    """A stored row whose JSON cannot be read as a measurement."""


def _time(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None)


def network(labels: Mapping[str, str]) -> tuple[str, str, str | None] | None:
    """(probe_cc, probe_asn, probe_network_name) from a vantage's labels, None when unknown.

    The config keys land in the labels as probe_cc/probe_asn/probe_network_name; labels cc and
    asn (what earlier versions read) are accepted too. Values that are not a two-letter country
    or "AS" + digits count as unknown.

    >>> network({"probe_cc": "KZ", "probe_asn": "AS9198"})
    ('KZ', 'AS9198', None)
    >>> network({"cc": "kz", "asn": "9198"}), network({"cc": "Kazakhstan", "asn": "AS9198"})
    (('KZ', 'AS9198', None), None)
    """
    cc = str(labels.get("probe_cc") or labels.get("cc") or "").strip().upper()
    asn = str(labels.get("probe_asn") or labels.get("asn") or "").strip().upper()
    if asn.isdigit():
        asn = "AS" + asn
    if not _CC.match(cc) or not _ASN.match(asn):
        return None
    name = labels.get("probe_network_name") or labels.get("network")
    return cc, asn, str(name) if name else None


def report_id(vantage: str, cc: str, asn: str, day: dt.date) -> str:
    """OONI's report id for one vantage's measurements of one UTC day (stable across exports).

    >>> report_id("kz-almaty", "KZ", "AS9198", dt.date(2019, 7, 20))[:44]
    '20190720T000000Z_webconnectivity_KZ_9198_n1_'
    """
    digest = hashlib.blake2b(f"{vantage}|{day.isoformat()}".encode(), digest_size=16).digest()
    letters = "".join(_LETTERS[b % len(_LETTERS)] for b in digest)
    return f"{day:%Y%m%d}T000000Z_webconnectivity_{cc}_{asn.removeprefix('AS')}_n1_{letters}"


def _test_helpers(obs: Mapping[str, Any]) -> dict[str, Any]:
    extra = obs.get("x_control")
    source = extra.get("source") if isinstance(extra, Mapping) else None
    if isinstance(source, str) and source.startswith("helper:"):
        return {"backend": {"address": source.removeprefix("helper:"), "type": "https"}}
    if isinstance(source, str) and source.startswith("vantage:"):
        return {"x_curfew_control_vantage": {"address": source.removeprefix("vantage:"), "type": "x_curfew"}}
    return {}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def ooni_record(
    row: Mapping[str, Any],
    vantage_labels: Mapping[str, str] | None = None,
    user_agent: str | None = None,
    controls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `measurements` row as an OONI measurement.

    `row` needs uid, started_at, vantage, target, url, runtime_s, observations, analysis.
    `controls`: what the control targets measured with it found (target, verdict, operation,
    failure, throughput_bps), exported as ``x_curfew_controls``: OONI's format has no place for
    them, and curfew's verdict (a vantage cut off, throttling) rests on them.
    Raises `CorruptRow` when its observations or analysis are not a measurement's JSON.
    """
    try:
        obs = _json(row["observations"])
        analysis = _json(row["analysis"])
        if not isinstance(obs, Mapping) or not isinstance(analysis, Mapping):
            raise CorruptRow("observations or analysis is not a JSON object")
        keys = test_keys(obs, analysis, user_agent)
        if controls is not None:
            keys["x_curfew_controls"] = controls
    except CorruptRow:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise CorruptRow(f"{type(exc).__name__}: {exc}") from None
    identity = network(vantage_labels or {}) or (DEFAULT_CC, DEFAULT_ASN, None)
    cc, asn, network_name = identity
    started = _time(row["started_at"])
    start = started.strftime(OONI_TIME)
    dns = obs.get("dns") or {}
    resolver_ip = None
    if dns.get("engine") in ("udp", "tcp"):
        resolver_ip = keys["queries"][0]["resolver_address"].rpartition(":")[0].strip("[]") or None
    return {
        "annotations": {
            "engine_name": SOFTWARE_NAME,
            "engine_version": __version__,
            "platform": sys.platform,
            "x_curfew_vantage": row["vantage"],
            "x_curfew_target": row["target"],
        },
        "data_format_version": DATA_FORMAT_VERSION,
        "input": row["url"],
        "measurement_start_time": start,
        "measurement_uid": row["uid"],
        "probe_asn": asn,
        "probe_cc": cc,
        "probe_ip": "127.0.0.1",  # OONI's convention for a redacted address
        "probe_network_name": network_name,
        "report_id": report_id(row["vantage"], cc, asn, started.date()),
        "resolver_asn": DEFAULT_ASN,
        "resolver_ip": resolver_ip,
        "resolver_network_name": None,
        "software_name": SOFTWARE_NAME,
        "software_version": __version__,
        "test_helpers": _test_helpers(obs),
        "test_keys": keys,
        "test_name": TEST_NAME,
        "test_runtime": float(row["runtime_s"]),
        "test_start_time": start,
        "test_version": TEST_VERSION,
    }


def _warn(message: str) -> None:
    log.warning("%s", message)


async def records(
    url: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    vantage: str | None = None,
    target: str | None = None,
    user_agent: str | None = None,
    on_skip: Callable[[str], None] = _warn,
    on_warning: Callable[[str], None] = _warn,
) -> AsyncIterator[dict[str, Any]]:
    """OONI measurements for the stored rows with ``since <= started_at < until``, oldest first.

    A corrupt row is skipped with `on_skip` naming its uid; a vantage with no probe_cc/probe_asn
    gets one `on_warning`.
    """
    m = tables.measurements
    query = select(
        m.c.uid,
        m.c.started_at,
        m.c.vantage,
        m.c.target,
        m.c.url,
        m.c.runtime_s,
        # The JSON columns as text: a corrupt one must reach ooni_record to be named, not
        # fail inside the driver's JSON decoding and end the export.
        type_coerce(m.c.observations, Text).label("observations"),
        type_coerce(m.c.analysis, Text).label("analysis"),
    ).order_by(m.c.started_at, m.c.id)
    if since is not None:
        query = query.where(m.c.started_at >= since)
    if until is not None:
        query = query.where(m.c.started_at < until)
    if vantage is not None:
        query = query.where(m.c.vantage == vantage)
    if target is not None:
        query = query.where(m.c.target == target)
    engine = create_engine(url)
    try:
        # Database trouble (unreachable, not a curfew database) as one StoreError line.
        with database_errors(redact_url(url)):
            async for record in _records(engine, query, on_warning, on_skip, user_agent):
                yield record
    finally:
        await engine.dispose()


async def _records(
    engine: Any,
    query: Any,
    on_warning: Callable[[str], None],
    on_skip: Callable[[str], None],
    user_agent: str | None,
) -> AsyncIterator[dict[str, Any]]:
    warned: set[str] = set()
    async with engine.connect() as conn, engine.connect() as lookups:
        v = tables.vantages
        labels = {r.name: dict(r.labels or {}) for r in await conn.execute(select(v.c.name, v.c.labels))}
        result = await conn.stream(query.execution_options(yield_per=BATCH))
        async for partition in result.partitions(BATCH):
            rows = [dict(r._mapping) for r in partition]
            for row in rows:
                row["observations"] = _parsed(row["observations"])
            outcomes = await _control_outcomes(lookups, rows)
            for row in rows:
                vantage_labels = labels.get(row["vantage"], {})
                if row["vantage"] not in warned and network(vantage_labels) is None:
                    warned.add(row["vantage"])
                    on_warning(
                        f"vantage {row['vantage']} has no valid probe_cc/probe_asn in its config: "
                        f"exported as {DEFAULT_CC}/{DEFAULT_ASN}, which OONI's pipeline discards"
                    )
                try:
                    yield ooni_record(row, vantage_labels, user_agent, _controls_of(row, outcomes))
                except CorruptRow as exc:
                    on_skip(f"measurement {row['uid']}: corrupt stored observations ({exc}); skipped")


BATCH: Final = 1000


def _parsed(text: Any) -> Any:
    """The observations JSON decoded, or the text itself when it is not JSON (ooni_record
    then names the row as corrupt)."""
    try:
        return _json(text)
    except ValueError:
        return text


def _control_uids(row: Mapping[str, Any]) -> list[str]:
    obs = row["observations"]
    extra = obs.get("x_control") if isinstance(obs, Mapping) else None
    uids = extra.get("controls") if isinstance(extra, Mapping) else None
    return [str(u) for u in uids] if isinstance(uids, list) else []


async def _control_outcomes(conn: Any, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the control targets named by `rows` (x_control.controls) found, by uid, in one query."""
    wanted = sorted({uid for row in rows for uid in _control_uids(row)})
    if not wanted:
        return {}
    m = tables.measurements
    query = select(m.c.uid, m.c.target, m.c.verdict, m.c.operation, m.c.failure, m.c.throughput_bps)
    found = await conn.execute(query.where(m.c.uid.in_(wanted)))
    return {r.uid: {k: v for k, v in r._mapping.items() if k != "uid"} for r in found}


def _controls_of(
    row: Mapping[str, Any], outcomes: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]] | None:
    uids = _control_uids(row)
    if not uids:
        return None
    return [outcomes[uid] for uid in uids if uid in outcomes]


async def export(url: str, out: TextIO, **filters: Any) -> int:
    """Write one OONI measurement per line to `out`; returns how many."""
    count = 0
    async for record in records(url, **filters):
        out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
        count += 1
    return count
