"""OONI Web Connectivity measurements shaped as the specs describe them, for the import's tests,
the benchmark and the docs' example (ooni/spec df-000, df-001, df-002, df-005, df-006, df-008,
ts-017; the LTE keys as ooni/probe-cli's webconnectivitylte writes them). Made here, not copied
from OONI's published data.

    measurement("tcp", lte=True)  # one dict, as one line of an OONI .jsonl file
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from functools import cache
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REAL_V4: Final = ("157.240.1.35",)
REAL_V6: Final = ("2a03:2880:f10c:83:face:b00c:0:25de",)
TITLES: Final = {"facebook.com": "Facebook - log in or sign up", "youtube.com": "YouTube"}


def title(url: str) -> str:
    host = url.split("/")[2]
    return next((t for domain, t in TITLES.items() if host == domain or host.endswith("." + domain)), host)


def page(url: str) -> str:
    """The site's page as the probe and the helper both get it when nothing interferes."""
    return (
        f"<!DOCTYPE html><html><head><title>{title(url)}</title></head><body>"
        + f"<div>Welcome to {title(url)}: connect with friends and the world around you.</div>" * 60
        + "</body></html>"
    )


PAGE: Final = page("https://www.facebook.com/")
PAGE_HEADERS: Final = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("X-FB-Debug", "m2dZq0mE7qJ8cGv0yQ2qk7o8T6c5Yc8ZfYJ7i3oP1nS2cQ9W0aA=="),
    ("Strict-Transport-Security", "max-age=15552000; preload"),
    ("Date", "Sat, 20 Jul 2019 15:00:00 GMT"),
)
BLOCKPAGE: Final = (
    "<html><head><title>Доступ ограничен</title></head><body>"
    "<h1>Доступ к информационному ресурсу ограничен</h1></body></html>"
)
CAPTCHA: Final = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>"
    '<form id="challenge-form" action="/cdn-cgi/l/chk_captcha"><div class="g-recaptcha"></div></form>'
    "</body></html>"
)
TECHNIQUES: Final = (
    "ok",
    "dns",
    "dns_nxdomain",
    "tcp",
    "tls",
    "mitm",
    "http_blockpage",
    "down",
    "captcha",
    "broken_redirect",
    "transparent_proxy",
    "redirect_blocked",
    "redirect_ok",
)
PLAIN_HTTP: Final = (
    "http_blockpage",
    "captcha",
    "transparent_proxy",
    "broken_redirect",
    "redirect_blocked",
    "redirect_ok",
)
"""Techniques measured on an http:// input (the others on https://)."""


def _name(*attrs: tuple[Any, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


@cache
def interception_chain() -> tuple[str, ...]:
    """Base64 DER of a leaf for www.facebook.com <- "C=KZ, CN=Security Certificate" <- "CN=Qaznet
    Trust Network" (the July 2019 interception's shape), made with throwaway keys."""
    now = dt.datetime(2019, 7, 1, tzinfo=dt.UTC)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    names = [
        _name((NameOID.COMMON_NAME, "Qaznet Trust Network")),
        _name((NameOID.COUNTRY_NAME, "KZ"), (NameOID.COMMON_NAME, "Security Certificate")),
        _name((NameOID.COMMON_NAME, "www.facebook.com")),
    ]
    certs = []
    for i in range(3):
        issuer = names[max(i - 1, 0)]
        builder = (
            x509.CertificateBuilder()
            .subject_name(names[i])
            .issuer_name(issuer)
            .public_key(keys[i].public_key())
            .serial_number(1000 + i)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
        )
        if i == 2:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("www.facebook.com")]), False
            )
        certs.append(builder.sign(keys[max(i - 1, 0)], hashes.SHA256()))
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    return tuple(base64.b64encode(d).decode() for d in reversed(ders))  # leaf first


def _answers(addresses: tuple[str, ...], qtype: str) -> list[dict[str, Any]]:
    key = "ipv4" if qtype == "A" else "ipv6"
    return [
        {"answer_type": qtype, key: a, "asn": 32934, "as_org_name": "Facebook, Inc.", "ttl": None}
        for a in addresses
    ]


def _queries(
    host: str, v4: tuple[str, ...], v6: tuple[str, ...], failure: str | None, lte: bool
) -> list[dict[str, Any]]:
    out = []
    for qtype, addrs in (("A", v4), ("AAAA", v6)):
        q: dict[str, Any] = {
            "answers": _answers(addrs, qtype) if failure is None and addrs else None,
            "engine": "getaddrinfo" if lte else "system",
            "failure": failure,
            "hostname": host,
            "query_type": qtype,
            "resolver_hostname": None,
            "resolver_port": None,
            "resolver_address": "",
            "t0": 0.001,
            "t": 0.025775,
        }
        if lte:
            q.update(transaction_id=1, tags=["classic", "depth=0"])
        out.append(q)
    if lte:  # E003: the extra DNS-over-UDP lookup, which the classic view ignores
        out.append(
            {
                **out[0],
                "engine": "udp",
                "resolver_address": "8.8.8.8:53",
                "transaction_id": 2,
                "tags": ["depth=0"],
                "answers": _answers(REAL_V4, "A"),
                "failure": None,
            }
        )
    return out


def _tcp(ip: str, port: int, failure: str | None, tid: int, lte: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ip": ip,
        "port": port,
        "status": {"blocked": failure is not None, "failure": failure, "success": failure is None},
        "t0": 0.03,
        "t": 0.07,
    }
    if lte:
        entry.update(transaction_id=tid, tags=["classic", "tcptls_experiment", "depth=0", "fetch_body=true"])
    return entry


def _tls(
    ip: str, host: str, failure: str | None, certs: tuple[str, ...], tid: int, lte: bool
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "cipher_suite": "TLS_AES_128_GCM_SHA256" if certs else "",
        "failure": failure,
        "negotiated_protocol": "h2" if certs else "",
        "no_tls_verify": False,
        "peer_certificates": [{"data": c, "format": "base64"} for c in certs] or None,
        "server_name": host,
        "t0": 0.07,
        "t": 0.2,
        "tags": ["tcptls_experiment"],
        "tls_version": "TLSv1.3" if certs else "",
    }
    if lte:
        entry.update(
            address=f"{ip}:443",
            transaction_id=tid,
            tags=["classic", "tcptls_experiment", "depth=0", "fetch_body=true"],
        )
    return entry


def _request(
    url: str,
    *,
    code: int = 0,
    body: str = "",
    headers: tuple[tuple[str, str], ...] = (),
    failure: str | None = None,
    tid: int | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "failure": failure,
        "request": {
            "body": "",
            "body_is_truncated": False,
            "headers_list": [["Accept", "text/html"], ["User-Agent", "Mozilla/5.0"]],
            "headers": {"Accept": "text/html", "User-Agent": "Mozilla/5.0"},
            "method": "GET",
            "tor": {"exit_ip": None, "exit_name": None, "is_tor": False},
            "x_transport": "tcp",
            "url": url,
        },
        "response": {
            "body": body if code else None,
            "body_is_truncated": False,
            "code": code,
            "headers_list": [list(h) for h in headers],
            "headers": dict(headers),
        },
        "t0": 0.2,
        "t": 0.4,
    }
    if tid is not None:
        entry.update(transaction_id=tid, tags=["classic", "depth=0", "fetch_body=true"])
    return entry


def _control(
    url: str,
    *,
    addrs: tuple[str, ...] = REAL_V4 + REAL_V6,
    dns_failure: str | None = None,
    tcp_failure: str | None = None,
    http_failure: str | None = None,
    body: str | None = None,
    code: int = 200,
    lte: bool = False,
) -> dict[str, Any]:
    port = 443 if url.startswith("https") else 80
    body = page(url) if body is None else body
    control: dict[str, Any] = {
        "tcp_connect": {
            (f"[{a}]:{port}" if ":" in a else f"{a}:{port}"): {
                "status": tcp_failure is None,
                "failure": tcp_failure,
            }
            for a in addrs
        },
        "http_request": {
            "body_length": len(body.encode()) if http_failure is None else -1,
            "failure": http_failure,
            "title": title(url) if http_failure is None else "",
            "headers": dict(PAGE_HEADERS) if http_failure is None else {},
            "status_code": code if http_failure is None else -1,
        },
        "dns": {"failure": dns_failure, "addrs": list(addrs) if dns_failure is None else None},
    }
    if lte:
        host = url.split("/")[2]
        control["tls_handshake"] = {
            (f"[{a}]:443" if ":" in a else f"{a}:443"): {
                "server_name": host,
                "status": tcp_failure is None,
                "failure": tcp_failure,
            }
            for a in addrs
        }
        control["ip_info"] = {a: {"asn": 32934, "flags": 10} for a in addrs}
    return control


def measurement(
    technique: str,
    *,
    lte: bool = False,
    url: str | None = None,
    start: str = "2019-07-20 15:00:00",
    cc: str = "KZ",
    asn: str = "AS9198",
    serial: int = 0,
) -> dict[str, Any]:
    """One OONI web_connectivity measurement of `technique` (one of `TECHNIQUES`)."""
    if technique not in TECHNIQUES:
        raise ValueError(technique)
    if url is None:
        url = "http://www.facebook.com/" if technique in PLAIN_HTTP else "https://www.facebook.com/"
    host = url.split("/")[2]
    port = 443 if url.startswith("https") else 80
    v4, v6 = REAL_V4, REAL_V6
    dns_failure = tcp_failure = tls_failure = http_failure = None

    control = _control(url, lte=lte)
    requests: list[dict[str, Any]] = []
    blocking: Any = False
    accessible: Any = True
    final_body, final_headers, final_code = page(url), PAGE_HEADERS, 200
    if technique == "dns":
        v4, v6 = ("10.10.34.34",), ()
        tcp_failure = "connection_refused"
        http_failure = "connection_refused"
        blocking, accessible = "dns", False
    elif technique == "dns_nxdomain":
        dns_failure = "dns_nxdomain_error"
        http_failure = "dns_nxdomain_error"
        blocking, accessible = "dns", False
    elif technique == "tcp":
        tcp_failure = "generic_timeout_error"
        http_failure = "generic_timeout_error"
        blocking, accessible = "tcp_ip", False
    elif technique == "tls":
        tls_failure = "connection_reset"
        http_failure = "connection_reset"
        blocking, accessible = "http-failure", False
    elif technique == "mitm":
        tls_failure = "ssl_unknown_authority"
        http_failure = "ssl_unknown_authority"
        blocking, accessible = "http-failure", False
    elif technique == "http_blockpage":
        final_body, final_headers = (
            BLOCKPAGE,
            (("Content-Type", "text/html; charset=utf-8"), ("Server", "nginx")),
        )
        blocking, accessible = "http-diff", False
    elif technique == "down":
        tcp_failure = "generic_timeout_error"
        http_failure = "generic_timeout_error"
        control = _control(
            url, tcp_failure="generic_timeout_error", http_failure="generic_timeout_error", lte=lte
        )
        blocking, accessible = False, False
    elif technique == "captcha":
        final_body, final_code = CAPTCHA, 403
        final_headers = (
            ("Content-Type", "text/html"),
            ("Server", "cloudflare"),
            ("CF-RAY", "4f8a-FRA"),
            ("cf-mitigated", "challenge"),
        )
        blocking, accessible = "http-diff", False  # OONI's classic false positive
    elif technique == "transparent_proxy":
        final_headers = (
            *PAGE_HEADERS[:1],
            ("Via", "1.1 proxy.isp.kz (squid/3.5.27)"),
            ("X-Cache", "MISS from proxy.isp.kz"),
            *PAGE_HEADERS[1:],
        )
        blocking, accessible = False, True

    tid = 3
    tcp_entries, tls_entries = [], []
    if dns_failure is None:
        for ip in v4 + v6:
            tcp_entries.append(_tcp(ip, port, tcp_failure, tid, lte))
            if port == 443 and tcp_failure is None:
                chain = interception_chain() if technique == "mitm" else _real_chain()
                tls_entries.append(
                    _tls(
                        ip,
                        host,
                        tls_failure,
                        chain if tls_failure in (None, "ssl_unknown_authority") else (),
                        tid,
                        lte,
                    )
                )
            tid += 1
    first_tid = 3 if lte else None
    if technique in ("broken_redirect", "redirect_blocked", "redirect_ok"):
        hop = (
            "https://www.facebook.com/" if technique != "redirect_blocked" else "http://static.xx.fbcdn.net/"
        )
        first = _request(url, code=301, body="", headers=(("Location", hop),), tid=first_tid)
        if technique == "broken_redirect":
            last = _request(hop, failure="ssl_invalid_hostname")
            http_failure = "ssl_invalid_hostname"
            control = _control(url, http_failure="ssl_invalid_hostname", lte=lte)
            blocking, accessible = "http-failure", False  # OONI's classic false positive
        elif technique == "redirect_blocked":
            last = _request(hop, failure="connection_reset")
            http_failure = "connection_reset"
            blocking, accessible = "http-failure", False
        else:
            last = _request(hop, code=200, body=page(url), headers=PAGE_HEADERS)
        requests = [last, first]  # ts-017: newest first
    elif http_failure is not None:
        requests = [_request(url, failure=http_failure, tid=first_tid)]
    else:
        requests = [_request(url, code=final_code, body=final_body, headers=final_headers, tid=first_tid)]

    test_keys: dict[str, Any] = {
        "agent": "redirect",
        "client_resolver": "91.185.2.1",
        "retries": None,
        "socksproxy": None,
        "queries": _queries(host, v4, v6, dns_failure, lte),
        "tcp_connect": tcp_entries,
        "tls_handshakes": tls_entries,
        "requests": requests,
        "network_events": [],
        "dns_experiment_failure": dns_failure,
        "http_experiment_failure": http_failure,
        "control_failure": None,
        "control": control,
        "dns_consistency": "inconsistent" if technique == "dns" else "consistent",
        "body_length_match": None,
        "body_proportion": None,
        "headers_match": None,
        "status_code_match": None,
        "title_match": None,
        "blocking": blocking,
        "accessible": accessible,
    }
    if lte:
        test_keys.update(x_dns_flags=0, x_blocking_flags=0, x_null_null_flags=0, x_status=0)
    uid = hashlib.sha256(f"{technique}{lte}{url}{start}{serial}".encode()).hexdigest()[:16]
    day = start.replace("-", "")[:8]
    return {
        "annotations": {
            "engine_name": "ooniprobe-engine",
            "engine_version": "3.21.0" if lte else "3.9.0",
            "platform": "linux",
        },
        "data_format_version": "0.2.0",
        "input": url,
        "measurement_start_time": start,
        "measurement_uid": f"{day}150000.000000_{cc}_webconnectivity_{uid}",
        "probe_asn": asn,
        "probe_cc": cc,
        "probe_ip": "127.0.0.1",
        "probe_network_name": "JSC Kazakhtelecom",
        "report_id": f"{day}T150000Z_webconnectivity_{cc}_{asn[2:]}_n1_{uid}",
        "resolver_asn": asn,
        "resolver_ip": "91.185.2.1",
        "resolver_network_name": "JSC Kazakhtelecom",
        "software_name": "ooniprobe-cli",
        "software_version": "3.21.0" if lte else "3.9.0",
        "test_helpers": {"backend": {"address": "https://0.th.ooni.org", "type": "https"}},
        "test_keys": test_keys,
        "test_name": "web_connectivity",
        "test_runtime": 1.2,
        "test_start_time": start,
        "test_version": "0.5.28" if lte else "0.4.3",
    }


@cache
def _real_chain() -> tuple[str, ...]:
    """A chain that validated (the probe said so: failure null); its content is not evidence."""
    return ()
