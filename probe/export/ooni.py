"""Stored measurements as OONI measurements (df-000 envelope, web_connectivity-like test keys).

`ooni_record` is pure: one `measurements` row (its `observations` JSON is the whole
Measurement, its `analysis` JSON the verdict) and the vantage's labels in, one OONI
measurement dict out. `export` streams rows from the database into JSON lines.

What maps to what:
- measurement_start_time: ``started_at`` as "YYYY-MM-DD hh:mm:ss" UTC; test_runtime: seconds.
- probe_asn / probe_cc: the vantage's labels ``asn`` / ``cc`` ("AS0" / "ZZ" when absent).
- test_keys.queries / tcp_connect / tls_handshakes / requests: the steps in OONI's shape
  (``t0``/``t`` are seconds since the measurement started, like OONI's).
- test_keys.blocking / accessible: OONI's flags; test_keys.curfew: curfew's own verdict,
  failure, operation and reason, and the throughput download (OONI has no such key).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

from sqlalchemy import select

from probe import SOFTWARE_NAME, __version__
from probe.store import tables
from probe.store.engine import create_engine

DATA_FORMAT_VERSION = "0.2.0"
TEST_NAME = "web_connectivity"
OONI_TIME = "%Y-%m-%d %H:%M:%S"
DEFAULT_ASN = "AS0"
DEFAULT_CC = "ZZ"


def _time(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime(OONI_TIME)


def _asn(labels: Mapping[str, str]) -> str:
    value = str(labels.get("asn", "")).strip().upper()
    if not value:
        return DEFAULT_ASN
    return value if value.startswith("AS") else f"AS{value}"


def _answer(address: str) -> dict[str, Any]:
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return {"answer_type": "CNAME", "hostname": address, "ttl": None}
    if version == 6:
        return {"answer_type": "AAAA", "ipv6": address, "ttl": None}
    return {"answer_type": "A", "ipv4": address, "ttl": None}


def _queries(dns: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """curfew resolves A and AAAA together: one OONI query entry per type that has answers
    (A alone when nothing came back, carrying the failure)."""
    if not dns:
        return []
    answers = [_answer(a) for a in dns.get("answers") or ()]
    resolver = str(dns.get("resolver") or "")
    host, _, port = resolver.rpartition(":") if resolver.count(":") == 1 else (resolver, "", "")
    base = {
        "hostname": dns.get("query"),
        "engine": dns.get("engine"),
        "resolver_hostname": None,
        "resolver_address": host or resolver,
        "resolver_port": port or None,
        "failure": dns.get("failure"),
        "t0": dns.get("t0"),
        "t": dns.get("t"),
    }
    out = []
    for query_type in ("A", "AAAA"):
        typed = [a for a in answers if a["answer_type"] == query_type]
        if typed or (query_type == "A" and not answers):
            out.append({**base, "query_type": query_type, "answers": typed or None})
    return out


def _tcp_connect(tcp: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "ip": o.get("address"),
            "port": o.get("port"),
            "status": {"success": o.get("failure") is None, "failure": o.get("failure"), "blocked": None},
            "t0": o.get("t0"),
            "t": o.get("t"),
        }
        for o in tcp
    ]


def _tls_handshakes(tls: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in tls:
        failure = o.get("failure")
        if failure is None and o.get("valid") is False:
            failure = o.get("validation_failure") or "ssl_invalid_certificate"
        out.append(
            {
                "address": f"{o.get('address')}:{o.get('port')}",
                "server_name": o.get("server_name"),
                "failure": failure,
                "tls_version": o.get("version"),
                "cipher_suite": o.get("cipher"),
                "negotiated_protocol": o.get("alpn"),
                "no_tls_verify": False,
                # OONI keeps the DER certificates; curfew records subject, issuer and hash.
                "peer_certificates": None,
                "curfew_peer_chain": list(o.get("peer_chain") or ()),
                "t0": o.get("t0"),
                "t": o.get("t"),
            }
        )
    return out


def _requests(http: Mapping[str, Any] | None, user_agent: str | None) -> list[dict[str, Any]]:
    if not http:
        return []
    headers = [[k, v] for k, v in http.get("headers") or ()]
    request_headers = [["User-Agent", user_agent]] if user_agent else []
    response = {
        "code": http.get("status"),
        "headers_list": headers,
        "headers": {k: v for k, v in headers},
        "body": http.get("body_sample"),
        "body_is_truncated": bool(http.get("body_truncated")),
        "body_length": http.get("body_length"),
        "body_sha256": http.get("body_sha256"),
        "title": http.get("title"),
    }
    return [
        {
            "request": {
                "method": "GET",
                "url": http.get("url"),
                "headers_list": request_headers,
                "headers": dict(request_headers),
                "tor": {"is_tor": False, "exit_ip": None, "exit_name": None},
                "x_transport": "tcp",
            },
            "response": response,
            "failure": http.get("failure"),
            "t0": http.get("t0"),
            "t": http.get("t"),
        }
    ]


def ooni_record(
    row: Mapping[str, Any], vantage_labels: Mapping[str, str] | None = None, user_agent: str | None = None
) -> dict[str, Any]:
    """One `measurements` row as an OONI measurement.

    `row` needs uid, started_at, vantage, target, url, runtime_s, observations, analysis.
    """
    obs: Mapping[str, Any] = _json(row["observations"])
    analysis: Mapping[str, Any] = _json(row["analysis"])
    labels = vantage_labels or {}
    start = _time(row["started_at"])
    blocking = analysis.get("blocking")
    accessible = analysis.get("accessible")
    verdict = analysis.get("verdict")
    test_keys = {
        "queries": _queries(obs.get("dns")),
        "tcp_connect": _tcp_connect(list(obs.get("tcp") or ())),
        "tls_handshakes": _tls_handshakes(list(obs.get("tls") or ())),
        "requests": _requests(obs.get("http"), user_agent),
        "dns_consistency": analysis.get("dns_consistency"),
        "body_length_match": None,
        "status_code_match": None,
        "headers_match": None,
        "title_match": None,
        # OONI: a string naming the layer when blocked, false when not, null when unknown.
        "blocking": blocking if blocking else (False if verdict == "ok" else None),
        "accessible": accessible,
        "curfew": {
            "verdict": verdict,
            "operation": analysis.get("operation"),
            "failure": analysis.get("failure"),
            "reason": analysis.get("reason"),
            "http_diff": analysis.get("http_diff"),
            "fingerprint": analysis.get("fingerprint"),
            "throughput_ratio": analysis.get("throughput_ratio"),
            "throughput": obs.get("throughput"),
            "deadline_hit": obs.get("deadline_hit"),
            "proxy": obs.get("proxy"),
        },
    }
    return {
        "annotations": {"curfew_vantage": row["vantage"], "curfew_target": row["target"]},
        "data_format_version": DATA_FORMAT_VERSION,
        "input": row["url"],
        "measurement_start_time": start,
        "measurement_uid": row["uid"],
        "probe_asn": _asn(labels),
        "probe_cc": str(labels.get("cc") or DEFAULT_CC).upper(),
        "probe_ip": "127.0.0.1",  # OONI's convention for a redacted address
        "probe_network_name": labels.get("network"),
        "report_id": "",
        "resolver_asn": DEFAULT_ASN,
        "resolver_ip": None,
        "software_name": SOFTWARE_NAME,
        "software_version": __version__,
        "test_keys": test_keys,
        "test_name": TEST_NAME,
        "test_runtime": float(row["runtime_s"]),
        "test_start_time": start,
        "test_version": __version__,
    }


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


async def records(
    url: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    vantage: str | None = None,
    target: str | None = None,
    user_agent: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """OONI measurements for the stored rows with ``since <= started_at < until``, oldest first."""
    m = tables.measurements
    query = select(
        m.c.uid,
        m.c.started_at,
        m.c.vantage,
        m.c.target,
        m.c.url,
        m.c.runtime_s,
        m.c.observations,
        m.c.analysis,
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
        async with engine.connect() as conn:
            v = tables.vantages
            labels = {r.name: dict(r.labels or {}) for r in await conn.execute(select(v.c.name, v.c.labels))}
            result = await conn.stream(query.execution_options(yield_per=1000))
            async for row in result:
                yield ooni_record(dict(row._mapping), labels.get(row.vantage), user_agent)
    finally:
        await engine.dispose()


async def export(url: str, out: TextIO, **filters: Any) -> int:
    """Write one OONI measurement per line to `out`; returns how many."""
    count = 0
    async for record in records(url, **filters):
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        count += 1
    return count
