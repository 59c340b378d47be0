"""One OONI Web Connectivity measurement (classic 0.4 or LTE 0.5 test keys) as curfew's data.

The probe's side becomes a `Measurement`, built from the classic algorithm's view (ts-017:
the system resolver's lookups of the input's host, the connects and handshakes at redirect
depth 0 that could fetch the body) plus the HTTP outcome of the whole redirect chain:

- the chain's final response, when it ended in one;
- the failing hop, when a request failed (its URL is the hop's, so a blocked next hop reads
  as that hop's failure);
- the next hop, failed with ``http_experiment_failure``, when the last response is a redirect
  that the probe could not follow (LTE records no request for a hop whose DNS or TCP failed).

The test helper's response becomes the control vantage's `Measurement` (`probe.helper.control`,
the one control model). What OONI itself concluded (blocking, accessible) and the chain travel
in `Imported` beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from probe import failures as F
from probe.analysis.helper_answer import with_valid_addresses
from probe.helper.control import control_measurement
from probe.helper.protocol import ProtocolError, THResponse
from probe.model import (
    Certificate,
    DnsEngine,
    DnsObservation,
    HttpObservation,
    Measurement,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
)
from probe.ooni import fields

WEB_CONNECTIVITY: Final = "web_connectivity"
CONTROL_VANTAGE: Final = "ooni-test-helper"
SYSTEM_ENGINES: Final = ("system", "getaddrinfo", "go")
# A handshake that "failed" with one of these completed: the peer's chain was received and did
# not validate (OONI's Go probes verify while handshaking). curfew keeps such handshakes as
# completed with `valid` False, as its own TLS layer records them.
VALIDATION_FAILURES: Final = (F.SSL_UNKNOWN_AUTHORITY, F.SSL_INVALID_HOSTNAME, F.SSL_INVALID_CERTIFICATE)
REDIRECTS: Final = (301, 302, 303, 307, 308)


class NotWebConnectivity(ValueError):
    """The measurement is of another test (counted and skipped, not an error)."""


@dataclass(frozen=True)
class Imported:
    """An OONI measurement read: the probe's view, the control's, and OONI's own findings."""

    measurement: Measurement
    control: Measurement | None
    th_response: THResponse | None
    """The test helper's answer as read (None when the control failed or could not be read)."""
    control_failure: str | None
    test_helper: str | None
    """The test helper's address (test_helpers.backend), if the measurement names it."""
    measurement_uid: str | None
    input: str
    report_id: str | None
    probe_cc: str
    probe_asn: str
    probe_network_name: str | None
    ooni_blocking: str | bool | None
    ooni_accessible: bool | None
    chain: tuple[str, ...]
    """The URLs the probe requested, in order (the input first)."""
    chain_failed_hop: int | None
    """Index in `chain` of the hop that failed, if the chain ended in a failure."""
    curfew_controls: tuple[Measurement, ...] | None = None
    """The control targets measured with it, when curfew exported it (``x_curfew_controls``)."""


@dataclass(frozen=True)
class Naming:
    """How imported measurements are named: vantage and target overrides."""

    vantages: Mapping[str, str] = field(default_factory=dict)
    """``CC-ASN`` or ``ASN`` -> vantage name; key "*" names every vantage."""
    targets: Sequence[tuple[str, str]] = ()
    """(name, pattern) in order; the first pattern matching the input names its target."""

    def vantage(self, cc: str, asn: str) -> str:
        from probe.ooni.naming import safe_name

        default = safe_name(f"{cc}-{asn}")
        return self.vantages.get(default) or self.vantages.get(asn) or self.vantages.get("*") or default

    def target(self, url: str) -> str:
        from probe.ooni.naming import matches, target_name

        for name, pattern in self.targets:
            if matches(pattern, url):
                return name
        return target_name(url)


def derived_uid(ooni: Mapping[str, Any], started_at: datetime, url: str) -> str:
    """A curfew uid (32 hex digits) that is the same every time the measurement is imported.

    From OONI's measurement_uid, else report_id + input + start time. Like `probe.uid`'s ids it
    starts with the time in milliseconds, so imported rows also land at the index's edge.

    >>> from datetime import UTC, datetime
    >>> at = datetime(2019, 6, 9, 5, 0, 0, tzinfo=UTC)
    >>> derived_uid({"measurement_uid": "x"}, at, "u") == derived_uid({"measurement_uid": "x"}, at, "v")
    True
    >>> derived_uid({}, at, "u")[:12]
    '016b3a9b8880'
    """
    ooni_uid = ooni.get("measurement_uid")
    if isinstance(ooni_uid, str) and ooni_uid:
        key = "uid:" + ooni_uid
    else:
        key = f"rid:{ooni.get('report_id') or ''}|{url}|{ooni.get('measurement_start_time')}"
    ms = int(started_at.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    return f"{ms:012x}" + hashlib.blake2b(key.encode(), digest_size=10).hexdigest()


# What a failed first request to an https URL says about its handshake when the probe recorded
# none (measurement-kit's probes, before 2020): the handshake is the first thing said on the
# connection, so a reset, an EOF, silence or a TLS error there is the handshake's.
_HANDSHAKE_FAILURES: Final = (
    F.CONNECTION_RESET,
    F.EOF_ERROR,
    F.GENERIC_TIMEOUT,
    F.SSL_FAILED_HANDSHAKE,
    *VALIDATION_FAILURES,
)


def _handshake_from_request(
    http: HttpObservation, host: str, tcp: tuple[TcpObservation, ...]
) -> tuple[tuple[TlsObservation, ...], HttpObservation | None]:
    connected = [o for o in tcp if o.failure is None]
    if http.failure not in _HANDSHAKE_FAILURES or not connected or http.status is not None:
        return (), http  # a response came: the handshake completed, the failure is the body's
    port = connected[0].port
    if http.failure in VALIDATION_FAILURES:
        # It completed with a chain that did not validate (the chain itself was not recorded).
        obs = TlsObservation(
            connected[0].address, port, host, http.t0, http.t, valid=False, validation_failure=http.failure
        )
    else:
        obs = TlsObservation(connected[0].address, port, host, http.t0, http.t, failure=http.failure)
    return (obs,), None


def _handshake_from_response(
    hop0: Mapping[str, Any], host: str, tcp: tuple[TcpObservation, ...]
) -> tuple[TlsObservation, ...]:
    """The handshake a response to the first https request proves, when the probe recorded none
    (measurement-kit's probes, before 2020): it completed, and its chain validated for the host,
    since those probes verify while handshaking (a chain that did not validate failed the request
    with "certificate verify failed"). Without it a geo-DNS answer fetched over HTTPS would look
    unvouched for. The connection is the first that succeeded: the HTTP client dials the
    resolver's answers in order, as the TCP experiment did."""
    connected = [o for o in tcp if o.failure is None]
    response = _mapping(hop0.get("response"))
    code = response.get("code")
    if not connected or not isinstance(code, int) or isinstance(code, bool) or code <= 0:
        return ()
    t = fields.number(hop0.get("t"))
    first = connected[0]
    return (TlsObservation(first.address, first.port, host, fields.number(hop0.get("t0"), t), t, valid=True),)


def _unverified(ooni: Mapping[str, Any]) -> bool:
    """Whether the probe fetched https without verifying certificates: the legacy Python
    ooniprobe (software_name "ooniprobe", 2.x) did not verify them."""
    return ooni.get("software_name") == "ooniprobe" and str(ooni.get("software_version") or "").startswith(
        ("1.", "2.")
    )


def _system_addresses_only(
    dns: DnsObservation | None,
    tcp: tuple[TcpObservation, ...],
    tls: tuple[TlsObservation, ...],
    entries: list[Mapping[str, Any]],
) -> tuple[tuple[TcpObservation, ...], tuple[TlsObservation, ...]]:
    """LTE also connects to addresses its other resolvers and the helper found; the classic view
    (ts-017) keeps the connects and handshakes to the system resolver's answers, or a tampered
    answer would hide behind a real address another resolver gave."""
    if dns is None or not dns.answers or not any(fields.tags(e) for e in entries):
        return tcp, tls
    answers = set(dns.answers)
    kept_tcp = tuple(o for o in tcp if o.address in answers)
    if not kept_tcp:
        return tcp, tls  # it connected to none of them: keep what it did
    return kept_tcp, tuple(o for o in tls if o.address in answers)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _dns(queries: list[Mapping[str, Any]], host: str, top_failure: str | None) -> DnsObservation | None:
    mine = [
        q for q in queries if str(q.get("hostname") or "").lower().rstrip(".") == host and fields.classic(q)
    ]
    system = [q for q in mine if q.get("engine") in SYSTEM_ENGINES] or mine
    if not system:
        if top_failure is None:
            return None
        return DnsObservation(host, "system", "system", 0.0, 0.0, (), top_failure)
    resolved = fields.answers(a for q in system for a in q.get("answers") or () if isinstance(a, Mapping))
    failure = None
    if not resolved:
        failure = next((f for q in system if (f := fields.failure(q.get("failure")))), None)
        failure = failure or top_failure or F.DNS_NO_ANSWER
    first = system[0]
    engine: DnsEngine = (
        "udp" if first.get("engine") == "udp" else "doh" if first.get("engine") == "doh" else "system"
    )
    resolver = str(first.get("resolver_address") or "") if engine != "system" else "system"
    return DnsObservation(
        query=host,
        resolver=resolver or "system",
        engine=engine,
        t0=min(fields.number(q.get("t0"), fields.number(q.get("t"))) for q in system),
        t=max(fields.number(q.get("t")) for q in system),
        answers=resolved,
        failure=failure,
    )


def _tcp(entries: list[Mapping[str, Any]], port: int) -> tuple[TcpObservation, ...]:
    out = []
    for e in entries:
        if not fields.classic(e) or not e.get("ip"):
            continue
        if isinstance(e.get("port"), int) and e["port"] != port:
            continue
        status = _mapping(e.get("status"))
        failure = fields.failure(status.get("failure"))
        if failure is None and status.get("success") is False:
            failure = "unknown_failure: connect failed"
        t = fields.number(e.get("t"))
        out.append(TcpObservation(str(e["ip"]), port, fields.number(e.get("t0"), t), t, failure))
    return tuple(out)


def _split_address(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _tls(
    entries: list[Mapping[str, Any]], host: str, port: int, tcp: tuple[TcpObservation, ...]
) -> tuple[TlsObservation, ...]:
    connected = [o.address for o in tcp if o.failure is None]
    out = []
    for index, e in enumerate(entries):
        if not fields.classic(e):
            continue
        server_name = str(e.get("server_name") or host)
        if server_name.lower().rstrip(".") != host:
            continue
        endpoint = _split_address(str(e.get("address") or ""))
        if endpoint is None:
            # 0.4 handshakes name no address: they ran over the connects that succeeded, in order.
            ip = connected[index] if index < len(connected) else (connected[-1] if connected else "")
            endpoint = (ip, port)
        failure = fields.failure(e.get("failure"))
        chain = tuple(c for c in map(fields.certificate, e.get("peer_certificates") or ()) if c is not None)
        valid: bool | None = None
        validation_failure = None
        if failure is None:
            valid = not bool(e.get("no_tls_verify"))
            if not valid:
                valid = None  # not verified: says nothing either way
        elif failure in VALIDATION_FAILURES:
            validation_failure, failure, valid = failure, None, False
        if valid is not False:
            chain = tuple(_without_der(c) for c in chain)  # a valid chain is not evidence
        t = fields.number(e.get("t"))
        out.append(
            TlsObservation(
                address=endpoint[0],
                port=endpoint[1],
                server_name=server_name,
                t0=fields.number(e.get("t0"), t),
                t=t,
                failure=failure,
                version=e.get("tls_version") or None,
                cipher=e.get("cipher_suite") or None,
                alpn=e.get("negotiated_protocol") or None,
                peer_chain=chain,
                valid=valid,
                validation_failure=validation_failure,
            )
        )
    return tuple(out)


def _without_der(cert: Certificate) -> Certificate:
    if cert.der is None:
        return cert
    return Certificate(cert.subject, cert.issuer, cert.sha256, cert.not_before, cert.not_after)


def _response(entry: Mapping[str, Any], address: str | None) -> HttpObservation:
    request = _mapping(entry.get("request"))
    response = _mapping(entry.get("response"))
    url = str(request.get("url") or "")
    failure = fields.failure(entry.get("failure"))
    code = response.get("code")
    status = code if isinstance(code, int) and code > 0 else None
    raw = response.get("body") if status is not None else None
    body = fields.text(raw) if raw is not None else None
    # A body that is null was not kept (curfew's export keeps it only as evidence); its
    # length and title then come from the x_ keys curfew writes beside it, if any.
    # A base64 body is bytes that need not be UTF-8: its length is theirs, not that of the text
    # with each invalid byte replaced by a three-byte U+FFFD.
    length: Any = None
    if body is not None:
        length = (
            len(fields.binary(raw))
            if isinstance(raw, Mapping)
            else len(body.encode("utf-8", "surrogatepass"))
        )
    title = fields.title(body) if body is not None else None
    if body is None or response.get("x_body_length") is not None:
        given = response.get("x_body_length")
        length = given if isinstance(given, int) and not isinstance(given, bool) else length
        title = str(response["x_title"]) if response.get("x_title") else title
    t = fields.number(entry.get("t"))
    return HttpObservation(
        url=url,
        address=address,
        t0=fields.number(entry.get("t0"), t),
        t=t,
        failure=failure if failure or status is not None else F.HTTP_REQUEST_FAILED,
        status=status,
        headers=fields.headers(response) if status is not None else (),
        title=title if status is not None else None,
        body_length=length if status is not None else None,
        body_truncated=bool(response.get("body_is_truncated")) and response.get("x_body_length") is None,
        body_sample=body[: fields.BODY_SAMPLE] if body is not None else None,
    )


def _http(
    requests: list[Mapping[str, Any]],
    url: str,
    http_failure: str | None,
    addresses: Mapping[Any, str],
) -> tuple[HttpObservation | None, tuple[str, ...], int | None]:
    """The chain's outcome, the chain's URLs (first hop first) and the failed hop's index."""
    hops = [r for r in reversed(requests) if isinstance(r, Mapping)]  # ts-017: newest first
    chain = [
        str(r["request"].get("url") or url) if isinstance(r.get("request"), Mapping) else url for r in hops
    ]
    if not hops:
        if http_failure is None:
            return None, (), None
        return HttpObservation(url, None, 0.0, 0.0, http_failure), (url,), 0
    last = hops[-1]
    obs = _response(last, addresses.get(last.get("transaction_id")))
    if obs.failure is not None:
        return obs, tuple(chain), len(chain) - 1
    location = obs.header("location")
    if obs.status in REDIRECTS and location and http_failure is not None:
        next_hop = urljoin(obs.url, location)
        failed = HttpObservation(next_hop, None, obs.t, obs.t, http_failure)
        return failed, (*chain, next_hop), len(chain)
    return obs, tuple(chain), None


def _labels(ooni: Mapping[str, Any], test_keys: Mapping[str, Any], chain: tuple[str, ...]) -> dict[str, str]:
    """What OONI said, kept beside curfew's verdict in the stored measurement (labels are text:
    blocking is its JSON spelling, "false" or "null" included)."""
    labels = {"source": "ooni", "ooni_input": str(ooni.get("input"))}
    for key in ("measurement_uid", "report_id", "test_version", "software_name", "software_version"):
        if ooni.get(key):
            labels[f"ooni_{key}"] = str(ooni[key])
    for key in ("blocking", "accessible", "dns_consistency"):
        value = test_keys.get(key)
        labels[f"ooni_{key}"] = (
            "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
    if len(chain) > 1:
        labels["ooni_redirect_chain"] = " -> ".join(chain)
    return labels


_CONNECTIVITY: Final = ("dns", "tcp_connect", "tls_handshake", "http_request")


def _throughput(test_keys: Mapping[str, Any]) -> ThroughputObservation | None:
    """curfew's bulk download, when curfew exported the measurement (``x_curfew.throughput``)."""
    extension = _mapping(test_keys.get("x_curfew"))
    tp = _mapping(extension.get("throughput"))
    if not tp or not tp.get("url"):
        return None
    samples = tuple(
        (float(s[0]), int(s[1]))
        for s in tp.get("samples") or ()
        if isinstance(s, list | tuple) and len(s) == 2
    )
    return ThroughputObservation(
        url=str(tp["url"]),
        t0=fields.number(tp.get("t0")),
        t=fields.number(tp.get("t")),
        failure=fields.failure(tp.get("failure")),
        bytes=int(tp.get("bytes") or 0),
        samples=samples,
        complete=bool(tp.get("complete")),
    )


def _curfew_controls(value: Any, m: Measurement) -> tuple[Measurement, ...] | None:
    """The control targets curfew measured beside `m` (exported as ``x_curfew_controls``), each
    as a measurement that failed at the step its verdict names, or succeeded, with its bulk
    rate: what the analysis needs of a control target."""
    if not isinstance(value, list):
        return None
    out = []
    for entry in value:
        if not isinstance(entry, Mapping):
            continue
        op, failure = entry.get("operation"), fields.failure(entry.get("failure"))
        failed = op in _CONNECTIVITY and failure is not None and failure != F.DNS_BOGON
        url = f"https://{entry.get('target') or 'control'}.invalid/"
        dns = tcp = http = None
        if failed and op == "dns":
            dns = DnsObservation(url, "system", "system", 0.0, 0.0, (), failure)
        elif failed and op == "tcp_connect":
            tcp = (TcpObservation("192.0.2.1", 443, 0.0, 0.0, failure),)
        elif failed:
            http = HttpObservation(url, None, 0.0, 0.0, failure)
        else:
            http = HttpObservation(url, None, 0.0, 0.0, status=200)
        bps = entry.get("throughput_bps")
        throughput = None
        if isinstance(bps, int | float) and bps > 0:
            throughput = ThroughputObservation(
                url, 0.0, 1.0, None, int(bps / 8), ((0.0, 0), (1.0, int(bps / 8))), True
            )
        out.append(
            Measurement(
                vantage=m.vantage,
                target=str(entry.get("target") or "control"),
                url=url,
                started_at=m.started_at,
                runtime=0.0,
                dns=dns,
                tcp=tcp or (),
                http=http,
                throughput=throughput,
                uid="0" * 32,
            )
        )
    return tuple(out)


def _test_helper(ooni: Mapping[str, Any]) -> str | None:
    helpers = _mapping(ooni.get("test_helpers"))
    backend = helpers.get("backend")
    if isinstance(backend, Mapping) and backend.get("address"):
        return str(backend["address"])
    if isinstance(backend, str) and backend:
        return backend
    return None


def _control_failure(test_keys: Mapping[str, Any]) -> bool:
    return bool(test_keys.get("control_failure")) or not isinstance(test_keys.get("control"), Mapping)


def parse(ooni: Mapping[str, Any], naming: Naming | None = None) -> Imported:
    """Read one OONI measurement. Raises `NotWebConnectivity` for another test's measurement
    and ValueError (with what is wrong) for one that is not a usable measurement."""
    naming = naming if naming is not None else Naming()
    test_name = ooni.get("test_name")
    if test_name != WEB_CONNECTIVITY:
        raise NotWebConnectivity(str(test_name))
    url = ooni.get("input")
    if not isinstance(url, str) or not urlsplit(url).hostname:
        raise ValueError("input is not a URL")
    test_keys = ooni.get("test_keys")
    if not isinstance(test_keys, Mapping):
        raise ValueError("test_keys is missing")
    started_at = fields.start_time(ooni.get("measurement_start_time"))
    cc = str(ooni.get("probe_cc") or "ZZ").upper()
    asn = str(ooni.get("probe_asn") or "AS0").upper()
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    port = _port(url)
    target = naming.target(url)

    def listed(key: str) -> list[Mapping[str, Any]]:
        value = test_keys.get(key)
        return [e for e in value if isinstance(e, Mapping)] if isinstance(value, list) else []

    dns = _dns(listed("queries"), host, fields.failure(test_keys.get("dns_experiment_failure")))
    tcp = _tcp(listed("tcp_connect"), port)
    tls = _tls(listed("tls_handshakes"), host, port, tcp) if urlsplit(url).scheme == "https" else ()
    tcp, tls = _system_addresses_only(dns, tcp, tls, listed("tcp_connect"))
    addresses = {
        e.get("transaction_id"): str(e.get("ip")) for e in listed("tcp_connect") if e.get("transaction_id")
    }
    http, chain, failed_hop = _http(
        listed("requests"), url, fields.failure(test_keys.get("http_experiment_failure")), addresses
    )
    if not tls and urlsplit(url).scheme == "https" and failed_hop == 0 and http is not None:
        tls, http = _handshake_from_request(http, host, tcp)
    requests = listed("requests")
    # Only 0.4 keys: LTE records every handshake, and its fetch may be from another resolver's address.
    if (
        not tls
        and urlsplit(url).scheme == "https"
        and requests
        and not fields.tags(requests[-1])
        and not _unverified(ooni)
    ):
        tls = _handshake_from_response(requests[-1], host, tcp)  # requests[-1]: the first hop
    measurement = Measurement(
        vantage=naming.vantage(cc, asn),
        target=target,
        url=url,
        started_at=started_at,
        runtime=fields.number(ooni.get("test_runtime")),
        dns=dns,
        tcp=tcp,
        tls=tls,
        http=http,
        throughput=_throughput(test_keys),
        labels=_labels(ooni, test_keys, chain),
        uid=derived_uid(ooni, started_at, url),
    )
    control = th = None
    if not _control_failure(test_keys):
        try:
            th = THResponse.from_json(test_keys["control"])
        except ProtocolError:
            th = None  # a control we cannot read is no control: the verdict says what it can without
        else:
            # ip_info's valid_for_domain vouches for addresses the helper handshook with off the
            # fetch path (the probe's own answers, on 443 for an http:// input), as curfew's live
            # path reads a helper's answer (`probe.analysis.helper_answer`).
            control = with_valid_addresses(
                control_measurement(th, url, vantage=CONTROL_VANTAGE, target=target, started_at=started_at),
                th.valid_addresses(),
            )
    blocking = test_keys.get("blocking")
    accessible = test_keys.get("accessible")
    network = ooni.get("probe_network_name")
    return Imported(
        measurement=measurement,
        control=control,
        th_response=th,
        control_failure=str(test_keys["control_failure"]) if test_keys.get("control_failure") else None,
        test_helper=_test_helper(ooni),
        measurement_uid=str(ooni["measurement_uid"]) if ooni.get("measurement_uid") else None,
        input=url,
        report_id=str(ooni["report_id"]) if ooni.get("report_id") else None,
        probe_cc=cc,
        probe_asn=asn,
        probe_network_name=str(network) if network else None,
        ooni_blocking=blocking if isinstance(blocking, str | bool) else None,
        ooni_accessible=accessible if isinstance(accessible, bool) else None,
        chain=chain,
        chain_failed_hop=failed_hop,
        curfew_controls=_curfew_controls(test_keys.get("x_curfew_controls"), measurement),
    )
