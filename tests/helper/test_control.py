"""The one control model: a helper's answer as a Measurement, and a Measurement as an answer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from probe import failures as F
from probe.analysis.verdict import analyze
from probe.helper.control import control_measurement, from_th_failure, th_response
from probe.helper.protocol import (
    FLAG_BOGON,
    FLAG_RESOLVED_BY_PROBE,
    FLAG_RESOLVED_BY_TH,
    FLAG_VALID_FOR_DOMAIN,
    THHttpRequest,
    THResponse,
    THTcpConnect,
    THTlsHandshake,
    dumps,
    parse_response,
)
from probe.model import HttpObservation
from tests.analysis.builders import STARTED, control, measurement

GOLDEN = Path(__file__).parent / "golden"
URL = "https://www.example.com/"


def golden(name: str) -> THResponse:
    return parse_response((GOLDEN / name).read_bytes())


def test_an_oohelperd_answer_becomes_the_controls_measurement() -> None:
    m = control_measurement(golden("response_oohelperd.json"), URL, vantage="th", target="example")
    assert (m.vantage, m.target, m.url) == ("th", "example", URL)
    assert m.dns is not None and m.dns.engine == "helper" and m.dns.failure is None
    assert m.dns.answers == ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert [(o.address, o.port, o.failure) for o in m.tcp] == [
        ("93.184.216.34", 443, None),
        ("2606:2800:220:1:248:1893:25c8:1946", 443, F.GENERIC_TIMEOUT),
    ]
    assert [(o.address, o.server_name, o.valid, o.failure) for o in m.tls] == [
        ("93.184.216.34", "www.example.com", True, None)
    ]
    assert m.http is not None and m.http.failure is None
    assert (m.http.status, m.http.title, m.http.body_length) == (200, "Example Domain", 1256)
    assert m.http.header("content-type") == "text/html; charset=UTF-8"


def test_th_failures_become_curfew_failures() -> None:
    m = control_measurement(golden("response_failures.json"), URL)
    assert m.dns is not None and m.dns.failure == F.DNS_NXDOMAIN
    assert m.tcp == () and m.tls == ()
    assert m.http is not None and m.http.failure == "unknown_failure: dns_lookup_error"
    assert m.http.status is None and m.http.body_length is None


@pytest.mark.parametrize(
    ("th", "curfew"),
    [
        ("dns_name_error", F.DNS_NXDOMAIN),
        ("dns_server_failure", F.DNS_SERVFAIL),
        ("connection_refused_error", F.CONNECTION_REFUSED),
        ("generic_timeout_error", F.GENERIC_TIMEOUT),
        ("connect_error", "unknown_failure: connect_error"),
        ("unknown_error", "unknown_failure: unknown_error"),
        ("ssl_unknown_authority", F.SSL_UNKNOWN_AUTHORITY),
        (None, None),
    ],
)
def test_failure_table(th: str | None, curfew: str | None) -> None:
    assert from_th_failure(th) == curfew


def test_a_url_with_an_ip_has_no_dns_step() -> None:
    m = control_measurement(golden("response_spec_example.json"), "https://93.184.216.34/")
    assert m.dns is None
    assert [o.address for o in m.tcp] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]


def test_an_http_url_keeps_only_the_fetch_path_and_443_validation_stays_in_ip_info() -> None:
    resp = THResponse(
        tcp_connect={"192.0.2.1:80": THTcpConnect(True), "192.0.2.1:443": THTcpConnect(True)},
        tls_handshake={"192.0.2.1:443": THTlsHandshake("site.example", True)},
        http_request=THHttpRequest(body_length=10, status_code=200),
    )
    m = control_measurement(resp, "http://site.example/")
    assert [(o.address, o.port) for o in m.tcp] == [("192.0.2.1", 80)]
    assert m.tls == ()


def test_a_chain_the_helper_could_not_validate_is_a_completed_invalid_handshake() -> None:
    resp = THResponse(
        tcp_connect={"192.0.2.1:443": THTcpConnect(True), "192.0.2.2:443": THTcpConnect(True)},
        tls_handshake={
            "192.0.2.1:443": THTlsHandshake("www.example.com", False, "ssl_invalid_hostname"),
            "192.0.2.2:443": THTlsHandshake("www.example.com", False, "connection_reset"),
        },
    )
    first, second = control_measurement(resp, URL).tls
    assert (first.failure, first.valid, first.validation_failure) == (None, False, F.SSL_INVALID_HOSTNAME)
    assert (second.failure, second.valid) == (F.CONNECTION_RESET, None)


def test_th_response_flags_every_address() -> None:
    # The helper resolved 157.240.0.35; the probe sent 10.10.34.34 (a rewrite) and the geo address.
    m = measurement(answers=("157.240.0.35",))
    m = replace(m, tcp=(*m.tcp, replace(m.tcp[0], address="31.13.72.36", failure=F.CONNECTION_REFUSED)))
    resp = th_response(m, ["10.10.34.34:443", "31.13.72.36:443", "garbage"])
    assert resp.ip_info["157.240.0.35"].flags == FLAG_RESOLVED_BY_TH | FLAG_VALID_FOR_DOMAIN
    assert resp.ip_info["10.10.34.34"].flags == FLAG_RESOLVED_BY_PROBE | FLAG_BOGON
    assert resp.ip_info["31.13.72.36"].flags == FLAG_RESOLVED_BY_PROBE
    assert resp.tcp_connect["31.13.72.36:443"] == THTcpConnect(False, "connection_refused_error")
    assert resp.tls_handshake["157.240.0.35:443"] == THTlsHandshake("www.facebook.com", True, None)
    assert resp.dns.addrs == ("157.240.0.35",) and resp.dns.failure is None
    assert resp.http_request.status_code == 200 and resp.http_request.title == "Facebook - log in or sign up"
    assert resp.http_request.headers == {"Content-Type": "text/html", "X-Fb-Debug": "abc"}
    assert resp.valid_addresses() == frozenset({"157.240.0.35"})


@pytest.mark.parametrize(
    ("kwargs", "dns_failure", "http_failure"),
    [
        ({"dns_failure": F.DNS_NXDOMAIN}, "dns_name_error", "dns_lookup_error"),
        ({"dns_failure": F.DNS_SERVFAIL}, "dns_server_failure", "dns_lookup_error"),
        ({"answers": ()}, None, "dns_lookup_error"),
        ({"tcp_failure": F.CONNECTION_REFUSED}, None, "connection_refused_error"),
        ({"tcp_failure": F.GENERIC_TIMEOUT}, None, "generic_timeout_error"),
        ({"tls_failure": F.CONNECTION_RESET}, None, "unknown_error"),
        ({"http_failure": F.EOF_ERROR}, None, "unknown_error"),
    ],
)
def test_th_response_speaks_the_legacy_helpers_failures(
    kwargs: dict[str, object], dns_failure: str | None, http_failure: str
) -> None:
    resp = th_response(measurement(**kwargs))  # type: ignore[arg-type]
    assert resp.dns.failure == dns_failure
    assert resp.http_request.failure == http_failure
    assert (resp.http_request.status_code, resp.http_request.body_length) == (-1, -1)


def test_an_invalid_chain_is_a_failed_handshake_in_the_answer() -> None:
    m = measurement(tls_valid=False, validation_failure=F.SSL_UNKNOWN_AUTHORITY)
    resp = th_response(m)
    assert resp.tls_handshake["157.240.0.35:443"] == THTlsHandshake(
        "www.facebook.com", False, "ssl_unknown_authority"
    )
    assert not resp.ip_info["157.240.0.35"].flags & FLAG_VALID_FOR_DOMAIN


def test_an_answer_survives_the_wire_and_comes_back_as_the_same_facts() -> None:
    m = measurement(answers=("157.240.0.35", "157.240.0.36"))
    resp = parse_response(dumps(th_response(m, ["157.240.0.35:443"])))
    back = control_measurement(resp, m.url, started_at=STARTED)
    assert back.dns is not None and back.dns.answers == m.dns.answers  # type: ignore[union-attr]
    assert [(o.address, o.failure) for o in back.tcp] == [(o.address, o.failure) for o in m.tcp]
    assert [(o.address, o.valid) for o in back.tls] == [(o.address, o.valid) for o in m.tls]
    assert isinstance(back.http, HttpObservation) and m.http is not None
    assert (back.http.status, back.http.title, back.http.body_length) == (
        m.http.status,
        m.http.title,
        m.http.body_length,
    )


# --- the analysis takes a helper's answer through its one control path ---


def helper_control(**kwargs: object) -> THResponse:
    return th_response(measurement(vantage="helper", **kwargs))  # type: ignore[arg-type]


def judge(m: object, resp: THResponse) -> tuple[str, str | None]:
    from probe.model import Measurement

    assert isinstance(m, Measurement)
    cv = control_measurement(resp, m.url, vantage="helper", target=m.target)
    a = analyze(m, controls=[control()], control_vantage=cv)
    return a.verdict, a.operation


def test_tcp_blocked_against_a_helper() -> None:
    assert judge(measurement(tcp_failure=F.GENERIC_TIMEOUT), helper_control()) == (
        "tcp_blocked",
        "tcp_connect",
    )


def test_target_down_when_the_helper_is_refused_too() -> None:
    m = measurement(tcp_failure=F.CONNECTION_REFUSED)
    assert judge(m, helper_control(tcp_failure=F.CONNECTION_REFUSED)) == ("target_down", "tcp_connect")


def test_dns_blocked_when_the_answers_are_disjoint_from_the_helpers() -> None:
    m = measurement(answers=("10.10.34.34",), tcp_failure=F.CONNECTION_REFUSED)
    assert judge(m, helper_control())[0] == "dns_blocked"


def test_ok_against_a_helper() -> None:
    assert judge(measurement(), helper_control()) == ("ok", None)
