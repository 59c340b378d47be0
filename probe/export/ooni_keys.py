"""The test keys of an exported measurement: curfew's stored observations in OONI's Web
Connectivity shape (ts-017 with df-001 requests, df-002 queries, df-005 tcp_connect, df-006
tls_handshakes, df-008 network_events), and the analysis keys OONI's tools read.

Pure: `test_keys(observations, analysis, user_agent)` takes the stored JSON (dicts) and
returns a dict. What maps to what is in docs/ooni.md; the choices in short:

- `queries`: one entry per query type (A and AAAA); `engine` "system" for the system resolver
  (getaddrinfo), "udp" with `resolver_address` "ip:port", "doh" with the URL.
- `transaction_id`: 1 for the lookup, then one per endpoint: the connect, the handshake, the
  network events and the request over that endpoint share it (ts-017).
- `blocking`: only the spec's values. OONI has no TLS or throttling value: a failed or
  intercepted handshake is "http-failure" (OONI's classic analysis places it there, the
  request that needed it failing), a blockpage "http-diff", a throttled page `false` (it
  loaded; curfew's verdict says throttled under `x_curfew`), a target down for the control
  too `false` with `accessible` false, no conclusion `null`.
- `control` / `control_failure`: the control the verdict was judged with, as stored (OONI's
  test-helper response shape); the `*_match` keys and `body_proportion` compare with it.
- curfew's own fields go under `x_` keys (OONI's convention for extensions).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final

from probe.analysis.httpdiff import compare_http
from probe.helper.control import control_measurement, join_endpoint
from probe.helper.protocol import ProtocolError, THResponse
from probe.model import HttpObservation

NO_CONTROL: Final = "unknown_failure: no control was measured"
_VALIDATION: Final = ("ssl_unknown_authority", "ssl_invalid_hostname", "ssl_invalid_certificate")

# curfew verdict -> (OONI blocking, accessible). http_blocked depends on whether a response came.
_FLAGS: Final[dict[str, tuple[Any, bool | None]]] = {
    "ok": (False, True),
    "throttled": (False, True),
    "dns_blocked": ("dns", False),
    "tcp_blocked": ("tcp_ip", False),
    "tls_blocked": ("http-failure", False),
    "tls_mitm": ("http-failure", False),
    "target_down": (False, False),
    "vantage_down": (None, None),
    "inconclusive": (None, None),
}


def blocking_flags(analysis: Mapping[str, Any]) -> tuple[Any, bool | None]:
    """(blocking, accessible) as ts-017 defines them, from curfew's analysis.

    >>> blocking_flags({"verdict": "tls_mitm"}), blocking_flags({"verdict": "http_blocked", "failure": None})
    (('http-failure', False), ('http-diff', False))
    """
    verdict = str(analysis.get("verdict"))
    if verdict == "http_blocked":
        return ("http-failure" if analysis.get("failure") else "http-diff"), False
    return _FLAGS.get(verdict, (None, None))


def _answer(address: str) -> dict[str, Any]:
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        return {"answer_type": "CNAME", "hostname": address, "ttl": None}
    if version == 6:
        return {"answer_type": "AAAA", "ipv6": address, "ttl": None}
    return {"answer_type": "A", "ipv4": address, "ttl": None}


def _resolver(dns: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(engine, resolver_address, resolver_port) as df-002 names them."""
    engine = str(dns.get("engine") or "system")
    resolver = str(dns.get("resolver") or "")
    if engine == "system":
        return "system", "", None
    if engine == "doh":
        return "doh", resolver, None
    if engine in ("udp", "tcp"):
        host, port = resolver, "53"
        if resolver.startswith("["):
            host, _, rest = resolver[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif resolver.count(":") == 1:
            host, _, port = resolver.partition(":")
        return engine, join_endpoint(host, int(port)) if port.isdigit() else resolver, port
    return engine, resolver, None  # "proxy": the proxy resolved the name


def queries(dns: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One df-002 entry per query type (A, AAAA): curfew resolves both in one lookup."""
    if not dns:
        return []
    engine, address, port = _resolver(dns)
    answers = [_answer(str(a)) for a in dns.get("answers") or ()]
    cnames = [a for a in answers if a["answer_type"] == "CNAME"]
    out = []
    for query_type in ("A", "AAAA"):
        typed = [a for a in answers if a["answer_type"] == query_type]
        out.append(
            {
                "answers": (cnames + typed) or None,
                "engine": engine,
                "failure": dns.get("failure") or (None if answers else "dns_no_answer"),
                "hostname": dns.get("query"),
                "query_type": query_type,
                "resolver_hostname": None,
                "resolver_address": address,
                "resolver_port": port,
                "t0": dns.get("t0"),
                "t": dns.get("t"),
                "transaction_id": 1,
            }
        )
    return out


class _Transactions:
    """transaction_id per endpoint ("ip:port"): 1 is the DNS lookup."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def of(self, endpoint: str) -> int:
        return self._ids.setdefault(endpoint, len(self._ids) + 2)

    def new(self) -> int:
        return self.of(f"#{len(self._ids)}")


def _control_tcp(control: Mapping[str, Any] | None) -> Mapping[str, Any]:
    tcp = control.get("tcp_connect") if control else None
    return tcp if isinstance(tcp, Mapping) else {}


def tcp_connect(
    tcp: list[Mapping[str, Any]], tx: _Transactions, control: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """df-005 entries, each with ts-017's `blocked`: failed here while the control connected."""
    th = _control_tcp(control)
    out = []
    for o in tcp:
        endpoint = join_endpoint(str(o.get("address")), int(o.get("port") or 0))
        failure = o.get("failure")
        seen = th.get(endpoint)
        blocked = None if not isinstance(seen, Mapping) else failure is not None and bool(seen.get("status"))
        out.append(
            {
                "ip": o.get("address"),
                "port": o.get("port"),
                "status": {"success": failure is None, "failure": failure, "blocked": blocked},
                "t0": o.get("t0"),
                "t": o.get("t"),
                "transaction_id": tx.of(endpoint),
            }
        )
    return out


def tls_handshakes(tls: list[Mapping[str, Any]], tx: _Transactions) -> list[dict[str, Any]]:
    """df-006 entries. A handshake whose chain did not validate fails with its ssl_* reason, as
    OONI's (validating) probes record it; the chain it got is in `peer_certificates` (base64
    DER, leaf first) whenever curfew kept the DER (it does for chains that do not validate)."""
    out = []
    for o in tls:
        failure = o.get("failure")
        if failure is None and o.get("valid") is False:
            failure = o.get("validation_failure") or "ssl_invalid_certificate"
        chain = [c for c in o.get("peer_chain") or () if isinstance(c, Mapping)]
        ders = [c.get("der") for c in chain]
        endpoint = join_endpoint(str(o.get("address")), int(o.get("port") or 0))
        out.append(
            {
                "address": endpoint,
                "cipher_suite": o.get("cipher") or "",
                "failure": failure,
                "negotiated_protocol": o.get("alpn") or "",
                "no_tls_verify": False,
                "peer_certificates": [{"data": d, "format": "base64"} for d in ders]
                if ders and all(ders)
                else None,
                "server_name": o.get("server_name"),
                "t0": o.get("t0"),
                "t": o.get("t"),
                "tls_version": o.get("version") or "",
                "transaction_id": tx.of(endpoint),
                "x_curfew_peer_chain": [
                    {k: c.get(k) for k in ("subject", "issuer", "sha256", "not_before", "not_after")}
                    for c in chain
                ],
            }
        )
    return out


def network_events(obs: Mapping[str, Any], tx: _Transactions) -> list[dict[str, Any]]:
    """df-008 events: each connect, each handshake's start and end, and the bulk download's
    samples as reads (bytes since the previous sample), in time order."""
    events: list[dict[str, Any]] = []
    for o in obs.get("tcp") or ():
        endpoint = join_endpoint(str(o.get("address")), int(o.get("port") or 0))
        events.append(
            {
                "address": endpoint,
                "failure": o.get("failure"),
                "operation": "connect",
                "proto": "tcp",
                "t0": o.get("t0"),
                "t": o.get("t"),
                "transaction_id": tx.of(endpoint),
            }
        )
    for o in obs.get("tls") or ():
        endpoint = join_endpoint(str(o.get("address")), int(o.get("port") or 0))
        for operation, t, failure in (
            ("tls_handshake_start", o.get("t0"), None),
            ("tls_handshake_done", o.get("t"), o.get("failure")),
        ):
            events.append(
                {
                    "address": endpoint,
                    "failure": failure,
                    "operation": operation,
                    "t": t,
                    "transaction_id": tx.of(endpoint),
                }
            )
    tp = obs.get("throughput")
    if isinstance(tp, Mapping) and tp.get("samples"):
        tid = tx.new()
        start = float(tp.get("t0") or 0.0)
        previous_t, previous_bytes = start, 0
        for sample in tp["samples"]:
            at, total = start + float(sample[0]), int(sample[1])
            events.append(
                {
                    "failure": None,
                    "num_bytes": total - previous_bytes,
                    "operation": "read",
                    "proto": "tcp",
                    "t0": previous_t,
                    "t": at,
                    "tags": ["x_curfew_throughput"],
                    "transaction_id": tid,
                }
            )
            previous_t, previous_bytes = at, total
    events.sort(key=lambda e: e.get("t") or 0.0)
    return events


def requests(
    http: Mapping[str, Any] | None, user_agent: str | None, tx: _Transactions, tcp: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The df-001 request (curfew keeps the final one). The body is the first 4 KB curfew kept
    as evidence (null on "ok" rows); its full length, hash and title go in `x_` keys."""
    if not http:
        return []
    url = str(http.get("url") or "")
    headers = [[str(k), str(v)] for k, v in http.get("headers") or ()]
    request_headers = [["User-Agent", user_agent]] if user_agent else []
    address = http.get("address")
    port = next((int(o.get("port") or 0) for o in tcp if o.get("address") == address), None)
    tid = tx.of(join_endpoint(str(address), port)) if address and port else tx.new()
    body = http.get("body_sample")
    length = http.get("body_length")
    truncated = bool(http.get("body_truncated")) or (
        body is not None and isinstance(length, int) and len(body.encode()) < length
    )
    return [
        {
            "failure": http.get("failure"),
            "request": {
                "body": "",
                "body_is_truncated": False,
                "headers_list": request_headers,
                "headers": dict(request_headers),
                "method": "GET",
                "tor": {"exit_ip": None, "exit_name": None, "is_tor": False},
                "url": url,
                "x_transport": "tcp",
            },
            "response": {
                "body": body,
                "body_is_truncated": truncated,
                "code": http.get("status") or 0,
                "headers_list": headers,
                "headers": {k: v for k, v in headers},
                "x_body_length": length,
                "x_body_sha256": http.get("body_sha256"),
                "x_title": http.get("title"),
            },
            "t0": http.get("t0"),
            "t": http.get("t"),
            "transaction_id": tid,
        }
    ]


def _http_observation(http: Mapping[str, Any]) -> HttpObservation:
    return HttpObservation(
        url=str(http.get("url") or ""),
        address=None,
        t0=0.0,
        t=0.0,
        failure=http.get("failure"),
        status=http.get("status"),
        headers=tuple((str(k), str(v)) for k, v in http.get("headers") or ()),
        title=http.get("title"),
        body_length=http.get("body_length"),
        body_truncated=bool(http.get("body_truncated")),
    )


def comparison(http: Mapping[str, Any] | None, control: Mapping[str, Any] | None) -> dict[str, Any]:
    """ts-017's *_match keys and body_proportion against the control's response (all null
    when either side has no response)."""
    keys: dict[str, Any] = dict.fromkeys(
        ("body_length_match", "body_proportion", "headers_match", "status_code_match", "title_match")
    )
    if not http or http.get("status") is None or not control:
        return keys
    try:
        th = THResponse.from_json(control)
    except ProtocolError:
        return keys
    reference = control_measurement(th, str(http.get("url") or "")).http
    if reference is None or reference.status is None:
        return keys
    c = compare_http(_http_observation(http), reference)
    keys.update(
        body_length_match=c.body_length_match,
        body_proportion=c.body_proportion,
        headers_match=c.headers_match,
        status_code_match=c.status_code_match,
        title_match=c.title_match,
    )
    return keys


def experiment_failures(obs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(dns_experiment_failure, http_experiment_failure): the lookup's failure, and what stopped
    the fetch (its own failure, or the connect or handshake it needed)."""
    dns = obs.get("dns") or {}
    dns_failure = dns.get("failure") if dns.get("engine") != "proxy" else None
    if dns and not dns_failure and not dns.get("answers") and dns.get("engine") != "proxy":
        dns_failure = "dns_no_answer"
    http = obs.get("http")
    if http:
        return dns_failure, http.get("failure")
    for step in ("tcp", "tls"):
        entries = [o for o in obs.get(step) or () if isinstance(o, Mapping)]
        if entries and all(o.get("failure") for o in entries):
            return dns_failure, entries[0].get("failure")
    tls = [o for o in obs.get("tls") or () if isinstance(o, Mapping)]
    if tls and all(o.get("valid") is False for o in tls):
        return dns_failure, tls[0].get("validation_failure") or _VALIDATION[0]
    return dns_failure, dns_failure


def test_keys(
    obs: Mapping[str, Any], analysis: Mapping[str, Any], user_agent: str | None = None
) -> dict[str, Any]:
    """The Web Connectivity test keys for one stored measurement."""
    tx = _Transactions()
    control = obs.get("control") if isinstance(obs.get("control"), Mapping) else None
    control_failure = obs.get("control_failure") if control is None else None
    if control is None and control_failure is None:
        control_failure = NO_CONTROL
    tcp = [o for o in obs.get("tcp") or () if isinstance(o, Mapping)]
    tls = [o for o in obs.get("tls") or () if isinstance(o, Mapping)]
    dns_failure, http_failure = experiment_failures(obs)
    blocking, accessible = blocking_flags(analysis)
    keys: dict[str, Any] = {
        "agent": "redirect",
        "client_resolver": None,
        "retries": None,
        "socksproxy": None,
        "queries": queries(obs.get("dns")),
        "tcp_connect": tcp_connect(tcp, tx, control),
        "tls_handshakes": tls_handshakes(tls, tx),
        "requests": requests(obs.get("http"), user_agent, tx, tcp),
        "network_events": network_events(obs, tx),
        "dns_experiment_failure": dns_failure,
        "http_experiment_failure": http_failure,
        "control": control,
        "control_failure": control_failure,
        "dns_consistency": analysis.get("dns_consistency"),
        **comparison(obs.get("http"), control),
        "blocking": blocking,
        "accessible": accessible,
        "x_curfew": {
            "verdict": analysis.get("verdict"),
            "operation": analysis.get("operation"),
            "failure": analysis.get("failure"),
            "reason": analysis.get("reason"),
            "blocking": analysis.get("blocking"),
            "http_diff": analysis.get("http_diff"),
            "fingerprint": analysis.get("fingerprint"),
            "throughput_ratio": analysis.get("throughput_ratio"),
            "throughput": obs.get("throughput"),
            "deadline_hit": obs.get("deadline_hit"),
            "proxy": obs.get("proxy"),
            "x_control": obs.get("x_control"),
        },
    }
    return keys
