"""OONI's `control` (the Web Connectivity test helper's response) as the control vantage's view.

The test helper measured the same URL from outside at the same moment: its DNS answers, its
TCP connects (and TLS handshakes, LTE) to the union of both address sets, and its fetch of
the URL with redirects followed. That is what `probe.analysis.verdict.analyze` takes as
`control_vantage`: a `Measurement` of the same target from an uncensored place.

Interim: this reads only what the import needs; the test helper's own protocol module
(`probe.helper.protocol.control_measurement`, issue 9) replaces it once it lands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from probe.model import DnsObservation, HttpObservation, Measurement, TcpObservation, TlsObservation
from probe.ooni import fields

CONTROL_VANTAGE = "ooni-test-helper"


def _endpoint(key: str) -> tuple[str, int] | None:
    host, sep, port = key.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def control_measurement(th: Mapping[str, Any], url: str, *, target: str, started_at: datetime) -> Measurement:
    """The test helper's response `th` for `url` as a curfew `Measurement`."""
    host = urlsplit(url).hostname or ""
    dns = None
    th_dns = th.get("dns")
    if isinstance(th_dns, Mapping):
        addrs = th_dns.get("addrs")
        dns = DnsObservation(
            query=host,
            resolver="test-helper",
            engine="system",
            t0=0.0,
            t=0.0,
            answers=tuple(str(a) for a in addrs) if isinstance(addrs, list) else (),
            failure=fields.failure(th_dns.get("failure")),
        )
    tcp = []
    th_tcp = th.get("tcp_connect")
    if isinstance(th_tcp, Mapping):
        for key, status in th_tcp.items():
            endpoint = _endpoint(str(key))
            if endpoint is None or not isinstance(status, Mapping):
                continue
            ok = bool(status.get("status"))
            failure = None if ok else fields.failure(status.get("failure")) or "unknown_failure: no status"
            tcp.append(TcpObservation(endpoint[0], endpoint[1], 0.0, 0.0, failure))
    tls = []
    th_tls = th.get("tls_handshake")
    if isinstance(th_tls, Mapping):
        for key, status in th_tls.items():
            endpoint = _endpoint(str(key))
            if endpoint is None or not isinstance(status, Mapping):
                continue
            ok = bool(status.get("status"))
            tls.append(
                TlsObservation(
                    endpoint[0],
                    endpoint[1],
                    str(status.get("server_name") or host),
                    0.0,
                    0.0,
                    None if ok else fields.failure(status.get("failure")) or "unknown_failure: no status",
                    valid=True if ok else None,  # the helper validates the chain for the name
                )
            )
    http = None
    th_http = th.get("http_request")
    if isinstance(th_http, Mapping):
        failure = fields.failure(th_http.get("failure"))
        status = th_http.get("status_code")
        length = th_http.get("body_length")
        th_headers = th_http.get("headers")
        got = failure is None and isinstance(status, int) and status > 0
        http = HttpObservation(
            url=url,
            address=None,
            t0=0.0,
            t=0.0,
            failure=failure if failure or got else "unknown_failure: no response",
            status=status if got else None,
            headers=tuple((str(k), fields.text(v)) for k, v in th_headers.items())
            if isinstance(th_headers, Mapping)
            else (),
            title=str(th_http.get("title")) if got and th_http.get("title") else None,
            body_length=length if got and isinstance(length, int) and length >= 0 else None,
        )
    return Measurement(
        vantage=CONTROL_VANTAGE,
        target=target,
        url=url,
        started_at=started_at,
        runtime=0.0,
        dns=dns,
        tcp=tuple(tcp),
        tls=tuple(tls),
        http=http,
        uid="0" * 32,
    )
