"""The one control model: a helper's answer and curfew's Measurement, each made from the other.

`control_measurement` turns a THResponse into the control's view of the target as a curfew
`Measurement`, so the analysis has one path whether the control came from a control vantage in
the same process, from a helper (curfew's or OONI's) or from a stored OONI control.
`th_response` does the reverse for `curfew helper`: its own measurement becomes the answer.

Failure strings cross the boundary through two small tables. The TH speaks the legacy helper's
strings (`dns_name_error`, `connection_refused_error`, `connect_error`...; see
`probe.helper.protocol`); curfew speaks df-007's. A legacy string that names no single df-007
failure (`connect_error`, `unknown_error`) becomes ``unknown_failure: <string>``, so the
analysis never reads more into it than the helper said.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from probe import failures as F
from probe.analysis.dnscheck import is_bogon
from probe.helper.protocol import (
    DNS_NAME_ERROR,
    FLAG_BOGON,
    FLAG_RESOLVED_BY_PROBE,
    FLAG_RESOLVED_BY_TH,
    FLAG_VALID_FOR_DOMAIN,
    THDns,
    THHttpRequest,
    THIpInfo,
    THResponse,
    THTcpConnect,
    THTlsHandshake,
)
from probe.model import DnsObservation, HttpObservation, Measurement, TcpObservation, TlsObservation

HELPER_RESOLVER: Final = "test-helper"
"""The `resolver` recorded on a control built from a helper's answer."""

# TH (legacy helper) failure -> curfew (df-007). Anything else passes through unchanged
# (TLS failures already are df-007 strings).
_FROM_TH: Final[dict[str, str]] = {
    DNS_NAME_ERROR: F.DNS_NXDOMAIN,
    "dns_server_failure": F.DNS_SERVFAIL,
    "dns_lookup_error": "unknown_failure: dns_lookup_error",
    "connection_refused_error": F.CONNECTION_REFUSED,
    "connect_error": "unknown_failure: connect_error",
    "unknown_error": "unknown_failure: unknown_error",
}
_SSL_VALIDATION: Final = (F.SSL_INVALID_HOSTNAME, F.SSL_UNKNOWN_AUTHORITY, F.SSL_INVALID_CERTIFICATE)


def from_th_failure(failure: str | None) -> str | None:
    """The df-007 failure for a TH failure string.

    >>> from_th_failure("dns_name_error"), from_th_failure("connection_refused_error")
    ('dns_nxdomain_error', 'connection_refused')
    >>> from_th_failure("connect_error")
    'unknown_failure: connect_error'
    """
    if failure is None:
        return None
    return _FROM_TH.get(failure, failure)


# Cached: an import reads millions of answers naming the same few thousand endpoints, and the
# address parse is most of the cost of reading a helper's answer.
@lru_cache(maxsize=65536)
def split_endpoint(endpoint: str) -> tuple[str, int] | None:
    """("ip", port) for "ip:port" or "[v6]:port"; None when it is not an IP endpoint.

    >>> split_endpoint("93.184.216.34:443"), split_endpoint("[2001:db8::1]:80")
    (('93.184.216.34', 443), ('2001:db8::1', 80))
    >>> split_endpoint("example.com:443") is None
    True
    """
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # an unbracketed v6 address is ambiguous
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(ip), int(port)


def join_endpoint(address: str, port: int) -> str:
    """Go's net.JoinHostPort: brackets around a v6 address."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def control_measurement(
    response: THResponse,
    url: str,
    *,
    vantage: str = "helper",
    target: str = "",
    started_at: datetime | None = None,
    runtime: float = 0.0,
) -> Measurement:
    """The helper's view of `url` as a curfew Measurement, for `analyze(control_vantage=...)`.

    DNS: the helper's answers or failure (None when the URL's host is an IP). TCP and TLS: one
    observation per endpoint on the URL's port (for an http:// URL the helper also handshakes
    on 443 to vouch for addresses; that is `THResponse.valid_addresses`, not part of the
    fetch path), a TLS `status` true being a completed handshake with a valid chain. HTTP: the
    final response's status, headers, title and body length, or its failure. Times are 0: the
    helper does not say when it did what.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = url_port(url)
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    dns = None
    if not literal:
        dns = DnsObservation(
            query=host,
            resolver=HELPER_RESOLVER,
            engine="helper",
            t0=0.0,
            t=0.0,
            answers=response.dns.addrs,
            failure=from_th_failure(response.dns.failure),
        )
    tcp = []
    for endpoint, result in sorted(response.tcp_connect.items()):
        split = split_endpoint(endpoint)
        if split is None or split[1] != port:
            continue
        failure = None if result.status else (from_th_failure(result.failure) or F.GENERIC_TIMEOUT)
        tcp.append(TcpObservation(address=split[0], port=port, t0=0.0, t=0.0, failure=failure))
    tls = []
    if parts.scheme == "https":
        for endpoint, hs in sorted(response.tls_handshake.items()):
            split = split_endpoint(endpoint)
            if split is None or split[1] != port:
                continue
            tls.append(_tls_observation(split[0], port, hs))
    return Measurement(
        vantage=vantage,
        target=target,
        url=url,
        started_at=started_at if started_at is not None else datetime.now(UTC),
        runtime=runtime,
        dns=dns,
        tcp=tuple(tcp),
        tls=tuple(tls),
        http=_http_observation(response.http_request, url),
    )


def _tls_observation(address: str, port: int, hs: THTlsHandshake) -> TlsObservation:
    if hs.status:
        return TlsObservation(address, port, hs.server_name, 0.0, 0.0, valid=True)
    failure = from_th_failure(hs.failure) or F.SSL_FAILED_HANDSHAKE
    if failure in _SSL_VALIDATION:
        # Go validates during the handshake; curfew records such a handshake as completed
        # with a chain that does not validate, and so does the control built here.
        return TlsObservation(
            address, port, hs.server_name, 0.0, 0.0, valid=False, validation_failure=failure
        )
    return TlsObservation(address, port, hs.server_name, 0.0, 0.0, failure=failure)


def _http_observation(result: THHttpRequest, url: str) -> HttpObservation:
    if result.failure is not None or result.status_code <= 0:
        failure = from_th_failure(result.failure) or F.HTTP_REQUEST_FAILED
        return HttpObservation(url=url, address=None, t0=0.0, t=0.0, failure=failure)
    return HttpObservation(
        url=url,
        address=None,
        t0=0.0,
        t=0.0,
        status=result.status_code,
        headers=tuple(sorted(result.headers.items())),
        title=result.title or None,
        body_length=result.body_length if result.body_length >= 0 else None,
    )


# --- curfew -> TH ---


def _dns_th_failure(failure: str | None) -> str | None:
    if failure is None or failure == F.DNS_NO_ANSWER:
        return None  # the legacy helper answers "no answer" with no failure and no addrs
    if failure == F.DNS_NXDOMAIN:
        return DNS_NAME_ERROR
    if failure in (F.DNS_SERVFAIL, F.DNS_REFUSED):
        return "dns_server_failure"
    return "unknown_error"


def _tcp_th_failure(failure: str) -> str:
    if failure == F.GENERIC_TIMEOUT:
        return failure
    if failure == F.CONNECTION_REFUSED:
        return "connection_refused_error"
    return "connect_error"


def _http_th_failure(failure: str) -> str:
    if failure.startswith("dns_"):
        return "dns_lookup_error"
    if failure == F.GENERIC_TIMEOUT:
        return failure
    if failure == F.CONNECTION_REFUSED:
        return "connection_refused_error"
    return "unknown_error"


def canonical_header(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey, as the helper's Go peers print header names.

    >>> canonical_header("content-type"), canonical_header("X-CACHE"), canonical_header("etag")
    ('Content-Type', 'X-Cache', 'Etag')
    """
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def th_response(m: Measurement, probe_addresses: Iterable[str] = ()) -> THResponse:
    """The helper's answer from its own measurement `m` of the probe's URL.

    `probe_addresses` are the request's `tcp_connect` endpoints ("ip:port") or plain IPs; they
    get FLAG_RESOLVED_BY_PROBE in `ip_info`, the helper's DNS answers FLAG_RESOLVED_BY_TH,
    bogons FLAG_BOGON, and an address where a TLS handshake completed with a chain valid for
    the name FLAG_VALID_FOR_DOMAIN. ASNs are 0 (unknown: curfew ships no ASN database; OONI's
    helper answers AS0 on a failed lookup too).
    """
    flags: dict[str, int] = {}
    for item in probe_addresses:
        split = split_endpoint(item)
        address = split[0] if split is not None else _ip(item)
        if address is not None:
            flags[address] = flags.get(address, 0) | FLAG_RESOLVED_BY_PROBE
    answers: tuple[str, ...] = ()
    dns_failure = None
    if m.dns is not None and m.dns.engine != "proxy":
        answers = tuple(a for a in m.dns.answers if _ip(a) is not None)
        dns_failure = _dns_th_failure(m.dns.failure)
        for address in answers:
            flags[address] = flags.get(address, 0) | FLAG_RESOLVED_BY_TH
    tcp = {
        join_endpoint(o.address, o.port): THTcpConnect(
            status=o.failure is None, failure=None if o.failure is None else _tcp_th_failure(o.failure)
        )
        for o in m.tcp
    }
    tls = {}
    for h in m.tls:
        ok = h.failure is None and h.valid is True
        failure = None if ok else (h.failure or h.validation_failure or F.SSL_INVALID_CERTIFICATE)
        tls[join_endpoint(h.address, h.port)] = THTlsHandshake(h.server_name, ok, failure)
        if ok and h.address in flags:
            flags[h.address] |= FLAG_VALID_FOR_DOMAIN
        elif ok and _ip(h.address) is not None:
            flags[h.address] = FLAG_VALID_FOR_DOMAIN
    ip_info = {
        address: THIpInfo(asn=0, flags=bits | (FLAG_BOGON if is_bogon(address) else 0))
        for address, bits in flags.items()
    }
    return THResponse(
        tcp_connect=tcp,
        tls_handshake=tls,
        quic_handshake={},
        http_request=_th_http(m),
        http3_request=None,
        dns=THDns(failure=dns_failure, addrs=answers),
        ip_info=ip_info,
    )


def _th_http(m: Measurement) -> THHttpRequest:
    http = m.http
    if http is None or http.failure is not None or http.status is None:
        failure = http.failure if http is not None and http.failure is not None else None
        if failure is None:  # never fetched: say why, from the step that stopped it
            failure = _first_failure(m) or F.HTTP_REQUEST_FAILED
        return THHttpRequest(body_length=-1, failure=_http_th_failure(failure), status_code=-1)
    headers: dict[str, str] = {}
    for name, value in http.headers:
        headers.setdefault(canonical_header(name), value)  # Go's Header.Get: the first value
    return THHttpRequest(
        body_length=http.body_length if http.body_length is not None else -1,
        failure=None,
        title=http.title or "",
        headers=headers,
        status_code=http.status,
    )


def _first_failure(m: Measurement) -> str | None:
    if m.dns is not None and m.dns.failure is not None:
        return m.dns.failure
    if m.dns is not None and not m.dns.answers and m.dns.engine != "proxy":
        return F.DNS_NO_ANSWER
    if m.tcp and all(o.failure is not None for o in m.tcp):
        return m.tcp[0].failure
    if m.tls and all(o.failure is not None for o in m.tls):
        return m.tls[0].failure
    return None


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
