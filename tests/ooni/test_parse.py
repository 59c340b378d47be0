"""OONI Web Connectivity measurements (classic 0.4 and LTE 0.5 test keys) judged by curfew:
one test per technique, from spec-shaped measurements (builders.py), with no network."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from probe.ooni.judge import judge
from probe.ooni.parse import Naming, NotWebConnectivity, parse
from tests.ooni.builders import interception_chain, measurement

VERSIONS = [pytest.param(False, id="classic-0.4"), pytest.param(True, id="lte-0.5")]


def verdict(technique: str, lte: bool, **kw: Any) -> tuple[str, str | None, str]:
    a = judge(parse(measurement(technique, lte=lte, **kw)))
    return a.verdict, a.blocking, a.reason


@pytest.mark.parametrize("lte", VERSIONS)
def test_ok(lte: bool) -> None:
    assert verdict("ok", lte)[:2] == ("ok", None)


@pytest.mark.parametrize("lte", VERSIONS)
def test_dns_bogon_answer_is_dns_blocked(lte: bool) -> None:
    assert verdict("dns", lte)[:2] == ("dns_blocked", "dns")


@pytest.mark.parametrize("lte", VERSIONS)
def test_dns_nxdomain_while_the_helper_resolves_is_dns_blocked(lte: bool) -> None:
    got, blocking, reason = verdict("dns_nxdomain", lte)
    assert (got, blocking) == ("dns_blocked", "dns")
    assert "dns_nxdomain_error" in reason


@pytest.mark.parametrize("lte", VERSIONS)
def test_tcp_timeout_on_every_address_is_tcp_blocked(lte: bool) -> None:
    assert verdict("tcp", lte)[:2] == ("tcp_blocked", "tcp_ip")


@pytest.mark.parametrize("lte", VERSIONS)
def test_reset_after_client_hello_is_tls_blocked(lte: bool) -> None:
    assert verdict("tls", lte)[:2] == ("tls_blocked", "tls")


@pytest.mark.parametrize("lte", VERSIONS)
def test_interception_chain_is_tls_mitm_and_kept(lte: bool) -> None:
    imported = parse(measurement("mitm", lte=lte))
    assert judge(imported).verdict == "tls_mitm"
    chain = imported.measurement.tls[0].peer_chain
    assert [c.subject for c in chain] == [
        "CN=www.facebook.com",
        "C=KZ, CN=Security Certificate",
        "CN=Qaznet Trust Network",
    ]
    assert tuple(c.der for c in chain) == interception_chain()  # the DER itself, for the export


@pytest.mark.parametrize("lte", VERSIONS)
def test_blockpage_on_plain_http_is_http_blocked(lte: bool) -> None:
    assert verdict("http_blockpage", lte)[:2] == ("http_blocked", "http-diff")


@pytest.mark.parametrize("lte", VERSIONS)
def test_target_down_for_the_helper_too_is_target_down(lte: bool) -> None:
    assert verdict("down", lte)[0] == "target_down"


@pytest.mark.parametrize("lte", VERSIONS)
def test_captcha_page_is_not_blocked(lte: bool) -> None:
    """OONI's classic analysis says http-diff; the page is the site's own bot check."""
    got, _, reason = verdict("captcha", lte)
    assert got == "ok"
    assert "bot check" in reason


@pytest.mark.parametrize("lte", VERSIONS)
def test_the_sites_own_broken_redirect_is_not_blocked(lte: bool) -> None:
    got, _, reason = verdict("broken_redirect", lte)
    assert got in ("target_down", "inconclusive")
    assert "the site's own redirect to https://www.facebook.com/" in reason


@pytest.mark.parametrize("lte", VERSIONS)
def test_transparent_proxy_serving_the_real_page_is_ok(lte: bool) -> None:
    assert verdict("transparent_proxy", lte)[0] == "ok"


@pytest.mark.parametrize("lte", VERSIONS)
def test_a_redirect_whose_next_hop_is_blocked_is_blocked(lte: bool) -> None:
    got, blocking, reason = verdict("redirect_blocked", lte)
    assert (got, blocking) == ("http_blocked", "http-failure")
    assert "next hop http://static.xx.fbcdn.net/" in reason


@pytest.mark.parametrize("lte", VERSIONS)
def test_a_redirect_chain_that_ends_in_the_page_is_ok(lte: bool) -> None:
    imported = parse(measurement("redirect_ok", lte=lte))
    assert judge(imported).verdict == "ok"
    assert imported.chain == ("http://www.facebook.com/", "https://www.facebook.com/")
    assert imported.measurement.http is not None and imported.measurement.http.status == 200


def test_lte_next_hop_without_a_request_fails_with_http_experiment_failure() -> None:
    """LTE records no request for a hop whose connect failed: the last response is the redirect."""
    m = measurement("redirect_blocked", lte=True)
    m["test_keys"]["requests"] = m["test_keys"]["requests"][1:]  # only the 301 remains
    imported = parse(m)
    assert imported.measurement.http is not None
    assert imported.measurement.http.url == "http://static.xx.fbcdn.net/"
    assert imported.measurement.http.failure == "connection_reset"
    assert judge(imported).verdict == "http_blocked"


def test_lte_extension_lookups_are_not_the_classic_view() -> None:
    """The extra DNS-over-UDP lookup (E003) answered the real address; getaddrinfo got a bogon."""
    imported = parse(measurement("dns", lte=True))
    assert imported.measurement.dns is not None
    assert imported.measurement.dns.answers == ("10.10.34.34",)
    assert imported.measurement.dns.engine == "system"


def test_without_a_control_a_failure_is_inconclusive() -> None:
    m = measurement("tcp")
    m["test_keys"]["control"] = {}
    m["test_keys"]["control_failure"] = "generic_timeout_error"
    assert judge(parse(m)).verdict == "inconclusive"


def test_the_identity_start_and_oonis_view() -> None:
    m = measurement("tcp")
    imported = parse(m)
    assert imported.measurement.vantage == "KZ-AS9198"
    assert imported.measurement.target == "www.facebook.com"
    assert imported.measurement.started_at == datetime(2019, 7, 20, 15, 0, tzinfo=UTC)
    assert imported.measurement_uid == m["measurement_uid"]
    assert imported.ooni_blocking == "tcp_ip" and imported.ooni_accessible is False
    assert imported.measurement.labels["ooni_blocking"] == "tcp_ip"
    assert len(imported.measurement.uid) == 32


def test_uid_is_stable_and_falls_back_to_report_input_and_time() -> None:
    m = measurement("ok")
    assert parse(m).measurement.uid == parse(measurement("ok")).measurement.uid
    del m["measurement_uid"]
    a = parse(m).measurement.uid
    assert a == parse(dict(m)).measurement.uid
    assert a != parse({**m, "measurement_start_time": "2019-07-20 15:00:01"}).measurement.uid
    assert a != parse({**m, "report_id": "other"}).measurement.uid


def test_target_and_vantage_naming() -> None:
    naming = Naming({"KZ-AS9198": "kaztelecom"}, [("facebook", "facebook.com"), ("yt", "*.youtube.com")])
    for url in ("https://www.facebook.com/", "https://m.facebook.com/", "https://facebook.com/"):
        imported = parse(measurement("ok", url=url), naming)
        assert (imported.measurement.vantage, imported.measurement.target) == ("kaztelecom", "facebook")
    assert parse(measurement("ok", url="https://www.youtube.com/"), naming).measurement.target == "yt"
    assert (
        parse(measurement("ok", url="https://notfacebook.com/"), naming).measurement.target
        == "notfacebook.com"
    )
    assert parse(measurement("ok", asn="AS48716"), naming).measurement.vantage == "KZ-AS48716"


def test_another_test_is_not_web_connectivity() -> None:
    with pytest.raises(NotWebConnectivity):
        parse({**measurement("ok"), "test_name": "telegram"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": None}, "input"),
        ({"test_keys": None}, "test_keys"),
        ({"measurement_start_time": "yesterday"}, "isoformat"),
    ],
)
def test_unusable_measurements_say_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse({**measurement("ok"), **change})


def _measurement_kit(technique: str, failure: str) -> dict[str, Any]:
    """As measurement-kit's probes (2016-2020) wrote it: no tls_handshakes, TLS problems as
    "ssl_error: <OpenSSL's text>" on the request."""
    m = measurement(technique)
    m.update(software_name="ooniprobe-android", software_version="2.1.0", test_version="0.1.0")
    keys = m["test_keys"]
    keys["tls_handshakes"] = None
    keys["requests"][0]["failure"] = keys["http_experiment_failure"] = failure
    return m


def test_measurement_kit_certificate_failure_is_interception() -> None:
    failure = "ssl_error: error:14090086:SSL routines:ssl3_get_server_certificate:certificate verify failed"
    imported = parse(_measurement_kit("mitm", failure))
    assert imported.measurement.tls[0].validation_failure == "ssl_unknown_authority"
    assert judge(imported).verdict == "tls_mitm"


def test_measurement_kit_reset_on_an_https_connection_is_tls_blocked() -> None:
    assert judge(parse(_measurement_kit("tls", "connection_reset"))).verdict == "tls_blocked"


def _geo_dns_over_https(software: str, version: str) -> dict[str, Any]:
    """measurement-kit's shape (no tls_handshakes) of an https site whose CDN answered with a
    local node the helper never saw, serving a localized page of another length and title."""
    m = measurement("ok")
    m.update(software_name=software, software_version=version, test_version="0.1.0")
    keys = m["test_keys"]
    keys["tls_handshakes"] = None
    cdn = "23.55.44.33"
    keys["queries"] = [
        {
            "answer_type": "A",
            "answers": [
                {"answer_type": "CNAME", "hostname": "star.c10r.facebook.com."},
                {"answer_type": "A", "ipv4": cdn, "ttl": None},
            ],
            "engine": "system",
            "failure": None,
            "hostname": "www.facebook.com",
            "query_type": "A",
            "resolver_hostname": None,
            "resolver_port": None,
            "resolver_address": "",
        }
    ]
    keys["tcp_connect"] = [
        {"ip": cdn, "port": 443, "status": {"blocked": False, "failure": None, "success": True}}
    ]
    response = keys["requests"][0]["response"]
    response["body"] = "<html><head><title>Facebook - вход или регистрация</title></head></html>"
    response["headers"] = {"Content-Type": "text/html"}
    response["headers_list"] = [["Content-Type", "text/html"]]
    return m


def test_measurement_kit_https_page_from_a_geo_dns_answer_is_ok() -> None:
    """The https response proves a handshake whose chain validated for the host (the probe
    verified it), so the answer is genuine although the helper never saw it."""
    imported = parse(_geo_dns_over_https("ooniprobe-android", "2.1.0"))
    got = judge(imported)
    assert (got.verdict, got.dns_consistency) == ("ok", "consistent")
    assert [(t.address, t.valid) for t in imported.measurement.tls] == [("23.55.44.33", True)]


def test_legacy_python_ooniprobe_https_response_vouches_for_nothing() -> None:
    """ooniprobe 2.x (Python) fetched https without verifying the chain."""
    imported = parse(_geo_dns_over_https("ooniprobe", "2.3.0"))
    assert imported.measurement.tls == ()
    assert judge(imported).dns_consistency == "inconsistent"


def test_measurement_kit_reset_after_the_response_is_not_a_handshake_failure() -> None:
    m = _measurement_kit("ok", "connection_reset")
    imported = parse(m)
    assert imported.measurement.http is not None and imported.measurement.http.status == 200
    assert all(t.failure is None for t in imported.measurement.tls)


@pytest.mark.parametrize(
    "body",
    [
        "<html><head><title>Access Denied</title></head><body>You don't have permission to access "
        "this server.<p>Reference&#32;&#35;18.2c3e1002.1563634800.1f3a4b</p>"
        '<a href="https://errors.edgesuite.net/18.2c3e1002">more</a></body></html>',
        "<html><body><h1>403 ERROR</h1><h2>The request could not be satisfied.</h2>"
        "Generated by cloudfront (CloudFront)</body></html>",
    ],
    ids=["akamai", "cloudfront"],
)
def test_the_sites_own_geo_block_is_not_blocked(body: str) -> None:
    m = measurement("captcha")
    response = m["test_keys"]["requests"][0]["response"]
    response["body"] = body
    response["headers_list"] = [["Content-Type", "text/html"], ["Server", "AkamaiGHost"]]
    response["headers"] = dict(response["headers_list"])
    got = judge(parse(m))
    assert got.verdict == "ok" and "refusal" in got.reason


def test_lte_a_tampered_answer_does_not_hide_behind_another_resolvers_address() -> None:
    """getaddrinfo got a wrong (public) address that refuses connections; LTE also connected to
    the real address its DNS-over-UDP lookup found and fetched the page there. The classic view
    keeps the system resolver's addresses only: DNS tampering."""
    m = measurement("ok", lte=True)
    keys = m["test_keys"]
    keys["queries"][0]["answers"] = [{"answer_type": "A", "ipv4": "5.255.255.5", "ttl": None}]
    keys["queries"][1]["answers"] = None
    wrong = {**keys["tcp_connect"][0], "ip": "5.255.255.5", "transaction_id": 9}
    wrong["status"] = {"blocked": True, "failure": "connection_refused", "success": False}
    keys["tcp_connect"].append(wrong)
    imported = parse(m)
    assert [o.address for o in imported.measurement.tcp] == ["5.255.255.5"]
    assert imported.measurement.tls == ()
    assert judge(imported).verdict == "dns_blocked"


@pytest.mark.parametrize("lte", VERSIONS)
def test_a_redirect_to_the_isps_warning_page_is_http_blocked(lte: bool) -> None:
    """Rostelecom's shape: the probe follows the ISP's 302 to warning.rt.ru and records the
    warning page as the chain's final response (200, no blockpage text of its own, no uncommon
    headers): the redirect hop is the evidence, named by fingerprint ooni.ru_6. The site is a
    small one whose own headers are all common ones, so OONI's header heuristic matches."""
    m = measurement("http_blockpage", lte=lte)
    m["test_keys"]["control"]["http_request"]["headers"] = {"Content-Type": "text/html", "Server": "nginx"}
    url = m["input"]
    warning = "http://warning.rt.ru/?id=17&st=0&dt=195.82.146.214&rs=" + url
    first, last = m["test_keys"]["requests"][-1], m["test_keys"]["requests"][0]
    first["response"].update(
        code=302, body="", headers={"Location": warning}, headers_list=[["Location", warning]]
    )
    last = {**last, "request": {**last["request"], "url": warning}}
    last["response"] = {
        "code": 200,
        "body": "<html><head><title>Доступ ограничен</title></head><body>Ресурс заблокирован</body></html>",
        "body_is_truncated": False,
        "headers": {"Content-Type": "text/html"},
        "headers_list": [["Content-Type", "text/html"]],
    }
    m["test_keys"]["requests"] = [last, first]
    a = judge(parse(m))
    assert (a.verdict, a.blocking, a.fingerprint) == ("http_blocked", "http-diff", "ooni.ru_6")
    assert "warning.rt.ru" in a.reason


def test_a_base64_body_has_the_length_of_its_bytes() -> None:
    """df-001: a body that is not UTF-8 is {"format": "base64", "data": ...}; its length is the
    bytes', as the helper counts it, not that of the text with invalid bytes replaced."""
    m = measurement("ok")
    raw = b"<html><head><title>Page</title></head>" + bytes(range(128, 256)) * 40
    m["test_keys"]["requests"][0]["response"]["body"] = {
        "format": "base64",
        "data": base64.b64encode(raw).decode(),
    }
    http = parse(m).measurement.http
    assert http is not None and http.body_length == len(raw) and http.title == "Page"


@pytest.mark.parametrize("lte", VERSIONS)
def test_a_captcha_from_a_geo_dns_node_is_not_dns_blocked(lte: bool) -> None:
    """The probe's resolver gave a CDN node the helper never saw, and the node answered with the
    CDN's bot check (which differs from the helper's page): the node is the site's, not a
    censor's, whatever the disjoint answers look like."""
    m = measurement("captcha", lte=lte)
    keys = m["test_keys"]
    for query in keys["queries"]:
        for answer in query.get("answers") or ():
            if answer.get("ipv4"):
                answer["ipv4"] = "104.16.99.1"
            if answer.get("ipv6"):
                answer["ipv6"] = "2606:4700::6810:6301"
    for entry in keys["tcp_connect"]:
        entry["ip"] = "2606:4700::6810:6301" if ":" in entry["ip"] else "104.16.99.1"
    got = judge(parse(m))
    assert (got.verdict, got.dns_consistency) == ("ok", "inconsistent")
    assert "bot check" in got.reason


@pytest.mark.parametrize("lte", VERSIONS)
def test_a_disjoint_answer_serving_another_page_is_still_dns_blocked(lte: bool) -> None:
    m = measurement("captcha", lte=lte)
    keys = m["test_keys"]
    for query in keys["queries"]:
        query["answers"] = [a for a in query.get("answers") or () if a.get("ipv4")] or None
        for answer in query["answers"] or ():
            answer["ipv4"] = "195.175.254.2"
    keys["tcp_connect"] = [dict(keys["tcp_connect"][0], ip="195.175.254.2")]
    body = "<html><head><title>Erişim engellendi</title></head><body>5651</body></html>"
    for request in keys["requests"]:
        request["response"].update(body=body, headers={"Server": "nginx"}, headers_list=[["Server", "nginx"]])
    assert judge(parse(m)).verdict == "dns_blocked"


def test_lte_an_answer_the_helper_validated_is_genuine_on_an_http_input() -> None:
    """LTE sends the probe's answers to the helper, which handshakes with them on 443 and flags
    the ones valid for the domain in ip_info (flag 8): a geo-DNS node the helper's own lookup
    never returned is then the site's, and a reset of the HTTP request to it is the block
    (http-failure), not DNS tampering."""
    m = measurement("captcha", lte=True)
    keys = m["test_keys"]
    for query in keys["queries"]:
        query["answers"] = [a for a in query.get("answers") or () if a.get("ipv4")] or None
        for answer in query["answers"] or ():
            answer["ipv4"] = "23.55.44.33"
    keys["tcp_connect"] = [dict(keys["tcp_connect"][0], ip="23.55.44.33")]
    keys["http_experiment_failure"] = "connection_reset"
    for request in keys["requests"]:
        request["failure"] = "connection_reset"
        request["response"].update(code=0, body=None, headers={}, headers_list=[])
    assert judge(parse(m)).verdict == "dns_blocked"  # unvouched, and something failed after it
    keys["control"]["ip_info"]["23.55.44.33"] = {"asn": 20940, "flags": 1 | 8}
    got = judge(parse(m))
    assert (got.verdict, got.blocking, got.dns_consistency) == ("http_blocked", "http-failure", "consistent")
