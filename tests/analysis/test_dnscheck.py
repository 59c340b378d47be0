"""DNS consistency: OONI's rules, and the guards against geo-DNS and loopback false positives."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probe.analysis.dnscheck import check_dns, is_bogon
from probe.analysis.fingerprints import default_fingerprints
from probe.model import TlsObservation

from .builders import also_reached, at_control_vantage, control, measurement

FB_FRANKFURT = ("157.240.0.35",)
FB_ALMATY = ("31.13.72.36",)


@pytest.mark.parametrize(
    ("address", "bogon"),
    [
        ("127.0.0.1", True),
        ("10.10.34.34", True),
        ("192.168.1.1", True),
        ("172.20.0.1", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fd00::1", True),
        ("157.240.0.35", False),
        ("2a03:2880:f10d:83:face:b00c::25de", False),
        ("restricted.tri.co.id", False),
    ],
)
def test_is_bogon(address: str, bogon: bool) -> None:
    assert is_bogon(address) is bogon


def test_geo_dns_disjoint_but_tls_valid_is_consistent() -> None:
    m = measurement(answers=FB_ALMATY)
    result = check_dns(m, at_control_vantage(answers=FB_FRANKFURT))
    assert result.consistency == "consistent"
    assert "valid certificate chain" in result.reason


@pytest.mark.parametrize(
    "blocked", [{"tcp_failure": "generic_timeout_error"}, {"tls_failure": "connection_reset"}]
)
def test_geo_dns_address_the_control_validated_is_consistent_though_blocked_here(
    blocked: dict[str, str],
) -> None:
    m = measurement(answers=FB_ALMATY, **blocked)  # type: ignore[arg-type]
    cv = also_reached(at_control_vantage(answers=FB_FRANKFURT), FB_ALMATY)
    result = check_dns(m, cv)
    assert result.consistency == "consistent"
    assert (
        "31.13.72.36 presented a valid certificate chain for www.facebook.com to the control" in result.reason
    )


def test_geo_dns_address_the_control_did_not_try_stays_inconsistent_when_blocked() -> None:
    m = measurement(answers=FB_ALMATY, tcp_failure="generic_timeout_error")
    assert check_dns(m, at_control_vantage(answers=FB_FRANKFURT)).consistency == "inconsistent"


def test_an_address_that_gave_the_control_a_wrong_chain_is_not_vouched_for() -> None:
    # A blockpage server on the vantage's answer presents a certificate for another name.
    m = measurement(answers=("10.10.34.35",), tls_failure="connection_reset")
    cv = also_reached(at_control_vantage(answers=FB_FRANKFURT), ("10.10.34.35",), valid=False)
    assert check_dns(m, cv).consistency == "inconsistent"


def test_the_control_vouches_only_for_the_same_name() -> None:
    m = measurement(answers=FB_ALMATY, tcp_failure="generic_timeout_error")
    other = also_reached(at_control_vantage("youtube", answers=("142.250.0.1",)), FB_ALMATY)
    assert check_dns(m, other).consistency == "inconsistent"


def test_overlap_with_control_vantage_is_consistent_without_tls() -> None:
    m = measurement(url="http://news.example/", host="news.example", answers=("93.184.216.34", "1.2.3.4"))
    cv = at_control_vantage(url="http://news.example/", host="news.example", answers=("93.184.216.34",))
    assert check_dns(m, cv).consistency == "consistent"


def test_loopback_overlapping_the_control_vantage_is_consistent() -> None:
    m = measurement(url="http://site.lab/", host="site.lab", answers=("127.0.0.1",))
    cv = at_control_vantage(url="http://site.lab/", host="site.lab", answers=("127.0.0.1",))
    result = check_dns(m, cv)
    assert result.consistency == "consistent"
    assert result.bogons == ("127.0.0.1",)


def test_loopback_validated_over_tls_is_consistent() -> None:
    assert check_dns(measurement(answers=("127.0.0.1",))).consistency == "consistent"


def test_disjoint_and_tls_fails_is_inconsistent() -> None:
    m = measurement(answers=("10.0.0.9",), tcp_failure="connection_refused")
    result = check_dns(m, at_control_vantage(answers=FB_FRANKFURT))
    assert result.consistency == "inconsistent"
    assert result.all_bogons


def test_disjoint_and_chain_invalid_is_inconsistent() -> None:
    m = measurement(answers=("203.0.114.9",), tls_valid=False, validation_failure="ssl_invalid_hostname")
    assert check_dns(m, at_control_vantage(answers=FB_FRANKFURT)).consistency == "inconsistent"


def test_tls_valid_for_another_name_does_not_vouch() -> None:
    m = measurement(answers=FB_ALMATY, tcp_failure="generic_timeout_error")
    # A handshake for a different SNI on the same address proves nothing about this name.
    tls = TlsObservation(address=FB_ALMATY[0], port=443, server_name="other.example", t0=0, t=1, valid=True)
    m = replace(m, tls=(tls,))
    assert check_dns(m, at_control_vantage(answers=FB_FRANKFURT)).consistency == "inconsistent"


def test_dns_fingerprint_is_inconsistent_even_without_control() -> None:
    m = measurement(url="http://blog.example/", host="blog.example", answers=("10.10.34.34",))
    result = check_dns(m, fingerprints=default_fingerprints())
    assert result.consistency == "inconsistent"
    assert result.fingerprint is not None and result.fingerprint.name == "ooni.ir_4"


def test_bogon_without_control_vantage_when_controls_resolve_publicly_is_inconsistent() -> None:
    m = measurement(answers=("127.0.0.1",), tcp_failure="connection_refused")
    assert check_dns(m, None, [control()]).consistency == "inconsistent"


def test_bogon_without_control_vantage_in_the_lab_is_unknown() -> None:
    # Every lab target lives on loopback: the control targets get bogons too.
    m = measurement(answers=("127.0.0.1",), tcp_failure="connection_refused")
    result = check_dns(m, None, [control(answers=("127.0.0.2",))])
    assert result.consistency is None


def test_public_disjoint_answers_without_any_comparison_are_unknown() -> None:
    m = measurement(url="http://news.example/", host="news.example", answers=("1.2.3.4",))
    assert check_dns(m, None, [control()]).consistency is None


def test_failed_dns_has_no_consistency() -> None:
    assert check_dns(measurement(dns_failure="dns_nxdomain_error")).consistency is None


def test_control_vantage_dns_failure_gives_nothing_to_compare() -> None:
    m = measurement(url="http://news.example/", host="news.example", answers=("1.2.3.4",))
    cv = at_control_vantage(url="http://news.example/", host="news.example", dns_failure="dns_servfail_error")
    assert check_dns(m, cv).consistency is None
