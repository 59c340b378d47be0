"""The verdict table: one row per technique in DOMAIN.md and per false positive it warns about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from probe.analysis.fingerprints import Fingerprints
from probe.analysis.verdict import analyze, failing_step
from probe.model import VERDICTS, Analysis, Measurement, TcpObservation

from .builders import MITM_ISSUER, also_reached, at_control_vantage, control, http, measurement, throughput

FB_ALMATY = ("31.13.72.36",)
FB_FRANKFURT = ("157.240.0.35",)
NEWS: dict[str, Any] = {"url": "http://news.example/", "host": "news.example"}
NEWS_IP = ("93.184.216.34",)
LAB: dict[str, Any] = {"url": "http://site.lab/", "host": "site.lab"}
MBIT = 1_000_000.0
LAB_CONTROL = control(answers=("127.0.0.2",))


@dataclass
class Row:
    target: Measurement
    controls: Sequence[Measurement] = field(default_factory=lambda: [control(), control("example")])
    control_vantage: Measurement | None = None
    baseline_bps: float | None = None


def fast_controls(bps: float) -> list[Measurement]:
    return [control(throughput_obs=throughput(bps)), control("example", throughput_obs=throughput(bps * 1.2))]


# (row, verdict, operation, failure, blocking)
TABLE = [
    pytest.param(
        Row(measurement(), control_vantage=at_control_vantage()),
        ("ok", None, None, None),
        id="ok",
    ),
    # --- DNS -------------------------------------------------------------------------------
    pytest.param(
        Row(measurement(dns_failure="dns_nxdomain_error"), control_vantage=at_control_vantage()),
        ("dns_blocked", "dns", "dns_nxdomain_error", "dns"),
        id="dns_nxdomain",
    ),
    pytest.param(
        Row(measurement(dns_failure="dns_servfail_error")),
        ("dns_blocked", "dns", "dns_servfail_error", "dns"),
        id="dns_servfail_without_control_vantage",
    ),
    pytest.param(
        Row(measurement(dns_failure="generic_timeout_error"), control_vantage=at_control_vantage()),
        ("dns_blocked", "dns", "generic_timeout_error", "dns"),
        id="dns_timeout_target_only",
    ),
    pytest.param(
        Row(measurement(answers=())),
        ("dns_blocked", "dns", "dns_no_answer", "dns"),
        id="dns_empty_answer",
    ),
    pytest.param(
        # The resolver lies with a loopback address that serves nothing: TCP is refused, but
        # the cause is DNS.
        Row(
            measurement(answers=("127.0.0.1",), tcp_failure="connection_refused"),
            control_vantage=at_control_vantage(),
        ),
        ("dns_blocked", "dns", "dns_bogon_error", "dns"),
        id="dns_bogon_loopback_refused",
    ),
    pytest.param(
        Row(
            measurement(answers=("10.10.34.35",), tcp_failure="generic_timeout_error"),
            control_vantage=None,
        ),
        ("dns_blocked", "dns", "dns_bogon_error", "dns"),
        id="dns_bogon_fingerprint_without_control_vantage",
    ),
    pytest.param(
        # Rewritten to a public blockpage server: the chain there is not valid for the name.
        Row(
            measurement(
                answers=("195.82.146.214",), tls_valid=False, validation_failure="ssl_invalid_hostname"
            ),
            control_vantage=at_control_vantage(),
        ),
        ("dns_blocked", "dns", None, "dns"),
        id="dns_rewritten_to_blockpage_ip",
    ),
    pytest.param(
        Row(measurement(dns_failure="dns_servfail_error", dns_engine="proxy")),
        ("inconclusive", "dns", "dns_servfail_error", None),
        id="dns_failure_at_proxy_is_inconclusive",
    ),
    # --- TCP -------------------------------------------------------------------------------
    pytest.param(
        Row(measurement(tcp_failure="generic_timeout_error"), control_vantage=at_control_vantage()),
        ("tcp_blocked", "tcp_connect", "generic_timeout_error", "tcp_ip"),
        id="tcp_syn_dropped",
    ),
    pytest.param(
        Row(measurement(tcp_failure="connection_reset"), control_vantage=at_control_vantage()),
        ("tcp_blocked", "tcp_connect", "connection_reset", "tcp_ip"),
        id="tcp_rst",
    ),
    pytest.param(
        Row(
            measurement(tls_failure="connection_reset", idle_reset=True), control_vantage=at_control_vantage()
        ),
        ("tcp_blocked", "tcp_connect", "connection_reset", "tcp_ip"),
        id="tcp_idle_connection_reset",
    ),
    pytest.param(
        Row(measurement(**NEWS, answers=NEWS_IP, http_failure="connection_reset", idle_reset=True)),
        ("tcp_blocked", "tcp_connect", "connection_reset", "tcp_ip"),
        id="tcp_idle_reset_after_http_reset",
    ),
    # --- TLS -------------------------------------------------------------------------------
    pytest.param(
        Row(
            measurement(tls_failure="connection_reset", idle_reset=False),
            control_vantage=at_control_vantage(),
        ),
        ("tls_blocked", "tls_handshake", "connection_reset", "tls"),
        id="tls_sni_rst",
    ),
    pytest.param(
        Row(measurement(tls_failure="generic_timeout_error"), control_vantage=at_control_vantage()),
        ("tls_blocked", "tls_handshake", "generic_timeout_error", "tls"),
        id="tls_sni_silence_kz_2023",
    ),
    pytest.param(
        Row(measurement(tls_failure="eof_error")),
        ("tls_blocked", "tls_handshake", "eof_error", "tls"),
        id="tls_eof",
    ),
    pytest.param(
        Row(
            measurement(tls_valid=False, validation_failure="ssl_unknown_authority", issuer=MITM_ISSUER),
            control_vantage=at_control_vantage(),
        ),
        ("tls_mitm", "tls_handshake", "ssl_unknown_authority", "tls"),
        id="tls_mitm_kz_2019",
    ),
    pytest.param(
        Row(measurement(tls_valid=False, validation_failure="ssl_unknown_authority", issuer=MITM_ISSUER)),
        ("tls_mitm", "tls_handshake", "ssl_unknown_authority", "tls"),
        id="tls_mitm_without_control_vantage",
    ),
    # --- HTTP ------------------------------------------------------------------------------
    pytest.param(
        Row(
            measurement(
                **LAB,
                answers=("127.0.0.1",),
                http_obs=http(LAB["url"], body_sample="<h1>Access to this resource is restricted</h1>"),
            ),
            controls=[LAB_CONTROL],
        ),
        ("http_blocked", "http_request", None, "http-diff"),
        id="http_blockpage_fingerprint_lab",
    ),
    pytest.param(
        Row(
            measurement(
                **NEWS,
                answers=NEWS_IP,
                http_obs=http(NEWS["url"], status=302, headers=(("Location", "http://warning.rt.ru/?id=1"),)),
            )
        ),
        ("http_blocked", "http_request", None, "http-diff"),
        id="http_warning_redirect_fingerprint",
    ),
    pytest.param(
        Row(
            measurement(
                **NEWS,
                answers=NEWS_IP,
                http_obs=http(NEWS["url"], status=302, headers=(("Location", "http://stop.isp.example/"),)),
            ),
            control_vantage=at_control_vantage(
                **NEWS,
                answers=NEWS_IP,
                http_obs=http(NEWS["url"], status=302, headers=(("Location", "https://news.example/"),)),
            ),
        ),
        ("http_blocked", "http_request", None, "http-diff"),
        id="http_redirect_to_other_host_than_control",
    ),
    pytest.param(
        Row(
            measurement(
                **NEWS,
                answers=NEWS_IP,
                http_obs=http(
                    NEWS["url"], body_length=800, title="Forbidden", headers=(), body_sample="<p>no"
                ),
            ),
            control_vantage=at_control_vantage(**NEWS, answers=NEWS_IP),
        ),
        ("http_blocked", "http_request", None, "http-diff"),
        id="http_diff_against_control_vantage",
    ),
    pytest.param(
        # The same 200 page as above, but with no control vantage there is nothing to diff.
        Row(
            measurement(
                **NEWS,
                answers=NEWS_IP,
                http_obs=http(
                    NEWS["url"], body_length=800, title="Forbidden", headers=(), body_sample="<p>no"
                ),
            ),
        ),
        ("ok", None, None, None),
        id="http_diff_without_control_is_not_blocked",
    ),
    pytest.param(
        # Over HTTPS with a valid chain the server itself answered: a different page is its doing.
        Row(
            measurement(http_obs=http(status=403, body_length=800, title="Captcha", headers=())),
            control_vantage=at_control_vantage(),
        ),
        ("ok", None, None, None),
        id="https_server_side_difference_is_not_blocked",
    ),
    pytest.param(
        Row(measurement(http_failure="connection_reset"), control_vantage=at_control_vantage()),
        ("http_blocked", "http_request", "connection_reset", "http-failure"),
        id="http_failure_after_tls",
    ),
    pytest.param(
        Row(measurement(**NEWS, answers=NEWS_IP, http_failure="http_request_failed")),
        ("http_blocked", "http_request", "http_request_failed", "http-failure"),
        id="http_failure_plain",
    ),
    # --- throughput ------------------------------------------------------------------------
    pytest.param(
        Row(measurement(throughput_obs=throughput(140_000)), controls=fast_controls(20 * MBIT)),
        ("throttled", "throughput", None, "throttling"),
        id="throttled_ru_twitter_2021",
    ),
    pytest.param(
        Row(
            measurement(throughput_obs=throughput(100_000, failure="generic_timeout_error", complete=False)),
            controls=fast_controls(20 * MBIT),
        ),
        ("throttled", "throughput", "generic_timeout_error", "throttling"),
        id="throttled_download_timed_out",
    ),
    pytest.param(
        Row(
            measurement(throughput_obs=throughput(140_000)),
            controls=fast_controls(20 * MBIT),
            baseline_bps=20 * MBIT,
        ),
        ("throttled", "throughput", None, "throttling"),
        id="throttled_below_controls_and_baseline",
    ),
    pytest.param(
        Row(measurement(throughput_obs=throughput(0.5 * MBIT)), controls=fast_controls(2 * MBIT)),
        ("ok", None, None, None),
        id="evening_congestion_slows_controls_too",
    ),
    pytest.param(
        Row(
            measurement(throughput_obs=throughput(140_000)),
            controls=fast_controls(20 * MBIT),
            baseline_bps=1 * MBIT,
        ),
        ("ok", None, None, None),
        id="slow_but_within_10x_of_its_baseline",
    ),
    pytest.param(
        Row(measurement(throughput_obs=throughput(140_000))),
        ("ok", None, None, None),
        id="no_control_throughput_no_throttled",
    ),
    pytest.param(
        Row(
            measurement(throughput_obs=throughput(1 * MBIT, failure="connection_reset", complete=False)),
            controls=fast_controls(20 * MBIT),
        ),
        ("inconclusive", "throughput", "connection_reset", None),
        id="bulk_download_reset_is_inconclusive",
    ),
    # --- vantage and target down -----------------------------------------------------------
    pytest.param(
        Row(
            measurement(dns_failure="generic_timeout_error"),
            controls=[
                control(dns_failure="generic_timeout_error"),
                control("example", dns_failure="generic_timeout_error"),
            ],
        ),
        ("vantage_down", "dns", "generic_timeout_error", None),
        id="vantage_shutdown_not_dns_blocked",
    ),
    pytest.param(
        Row(
            measurement(tcp_failure="network_unreachable"),
            controls=[
                control(dns_failure="generic_timeout_error"),
                control("example", tcp_failure="host_unreachable"),
            ],
        ),
        ("vantage_down", "tcp_connect", "network_unreachable", None),
        id="vantage_shutdown_mixed_failures",
    ),
    pytest.param(
        Row(
            measurement(tcp_failure="generic_timeout_error"),
            controls=[control(tcp_failure="generic_timeout_error")],
        ),
        ("inconclusive", "tcp_connect", "generic_timeout_error", None),
        id="everything_fails_but_resolver_answers",
    ),
    pytest.param(
        Row(measurement(dns_failure="generic_timeout_error"), controls=[]),
        ("inconclusive", "dns", "generic_timeout_error", None),
        id="no_controls_never_vantage_down",
    ),
    pytest.param(
        Row(
            measurement(tcp_failure="generic_timeout_error"),
            controls=[],
            control_vantage=at_control_vantage(),
        ),
        ("inconclusive", "tcp_connect", "generic_timeout_error", None),
        id="no_controls_cannot_tell_a_block",
    ),
    pytest.param(
        Row(
            measurement(tcp_failure="generic_timeout_error"),
            control_vantage=at_control_vantage(tcp_failure="generic_timeout_error"),
        ),
        ("target_down", "tcp_connect", "generic_timeout_error", None),
        id="target_down_everywhere",
    ),
    pytest.param(
        Row(
            measurement(dns_failure="dns_nxdomain_error"),
            control_vantage=at_control_vantage(dns_failure="dns_no_answer"),
        ),
        ("target_down", "dns", "dns_nxdomain_error", None),
        id="target_down_name_gone_everywhere",
    ),
    pytest.param(
        Row(
            measurement(answers=FB_ALMATY, tcp_failure="connection_reset"),
            control_vantage=at_control_vantage(answers=FB_FRANKFURT, tcp_failure="connection_reset"),
        ),
        ("target_down", "tcp_connect", "connection_reset", None),
        id="target_down_with_geo_dns_is_not_dns_blocked",
    ),
    pytest.param(
        Row(
            measurement(tls_failure="connection_reset"),
            control_vantage=at_control_vantage(tcp_failure="generic_timeout_error"),
        ),
        ("inconclusive", "tls_handshake", "connection_reset", None),
        id="control_vantage_fails_differently",
    ),
    # --- false positives -------------------------------------------------------------------
    pytest.param(
        Row(measurement(answers=FB_ALMATY), control_vantage=at_control_vantage(answers=FB_FRANKFURT)),
        ("ok", None, None, None),
        id="geo_dns_differs_but_tls_valid",
    ),
    pytest.param(
        # kz-astana's CDN node, SYN-dropped there; the control validated it for the name.
        Row(
            measurement(answers=FB_ALMATY, tcp_failure="generic_timeout_error"),
            control_vantage=also_reached(at_control_vantage(answers=FB_FRANKFURT), FB_ALMATY),
        ),
        ("tcp_blocked", "tcp_connect", "generic_timeout_error", "tcp_ip"),
        id="geo_dns_valid_at_the_control_then_syn_dropped",
    ),
    pytest.param(
        Row(
            measurement(answers=FB_ALMATY, tls_failure="connection_reset"),
            control_vantage=also_reached(at_control_vantage(answers=FB_FRANKFURT), FB_ALMATY),
        ),
        ("tls_blocked", "tls_handshake", "connection_reset", "tls"),
        id="geo_dns_valid_at_the_control_then_tls_reset",
    ),
    pytest.param(
        # Without the control trying the vantage's address, nothing vouches for it.
        Row(
            measurement(answers=FB_ALMATY, tls_failure="connection_reset"),
            control_vantage=at_control_vantage(answers=FB_FRANKFURT),
        ),
        ("dns_blocked", "dns", None, "dns"),
        id="geo_dns_unvouched_then_tls_reset",
    ),
    pytest.param(
        Row(
            measurement(**LAB, answers=("127.0.0.1",)),
            controls=[control(answers=("127.0.0.1",))],
            control_vantage=at_control_vantage(**LAB, answers=("127.0.0.1",)),
        ),
        ("ok", None, None, None),
        id="loopback_answers_overlap_control",
    ),
]


@pytest.mark.parametrize(("row", "expected"), TABLE)
def test_verdict_table(row: Row, expected: tuple[str, str | None, str | None, str | None]) -> None:
    result = analyze(
        row.target, controls=row.controls, control_vantage=row.control_vantage, baseline_bps=row.baseline_bps
    )
    assert (result.verdict, result.operation, result.failure, result.blocking) == expected
    assert result.verdict in VERDICTS
    assert result.reason and "\n" not in result.reason


def _analyze(row: Row) -> Analysis:
    return analyze(
        row.target, controls=row.controls, control_vantage=row.control_vantage, baseline_bps=row.baseline_bps
    )


def test_every_verdict_has_a_row() -> None:
    seen = {_analyze(p.values[0]).verdict for p in TABLE}  # type: ignore[arg-type]
    assert seen == set(VERDICTS)


def test_tls_mitm_records_the_issuer() -> None:
    m = measurement(tls_valid=False, validation_failure="ssl_unknown_authority", issuer=MITM_ISSUER)
    result = analyze(m, controls=[control()], control_vantage=at_control_vantage())
    assert MITM_ISSUER in result.reason
    assert result.accessible is False


def test_invalid_chain_at_both_vantages_is_not_mitm() -> None:
    m = measurement(tls_valid=False, validation_failure="ssl_invalid_certificate")
    cv = at_control_vantage(tls_valid=False, validation_failure="ssl_invalid_certificate")
    assert analyze(m, controls=[control()], control_vantage=cv).verdict == "target_down"


def test_blockpage_records_the_fingerprint_name() -> None:
    m = measurement(
        **LAB,
        answers=("127.0.0.1",),
        http_obs=http(LAB["url"], body_sample="Access to this resource is restricted"),
    )
    result = analyze(m, controls=[LAB_CONTROL])
    assert (result.verdict, result.fingerprint) == ("http_blocked", "lab_blockpage")
    assert result.failure is None


def test_dns_rewrite_to_a_blockpage_records_both() -> None:
    m = measurement(
        **NEWS,
        answers=("10.0.0.80",),
        http_obs=http(NEWS["url"], body_sample="Access to this resource is restricted"),
    )
    cv = at_control_vantage(**NEWS, answers=NEWS_IP)
    result = analyze(m, controls=[control()], control_vantage=cv)
    assert (result.verdict, result.dns_consistency, result.fingerprint) == (
        "dns_blocked",
        "inconsistent",
        "lab_blockpage",
    )


def test_throttled_reports_the_ratio() -> None:
    result = analyze(measurement(throughput_obs=throughput(100_000)), controls=fast_controls(10 * MBIT))
    assert result.throughput_ratio == pytest.approx(100_000 / 11_000_000)
    assert result.accessible is True


def test_exactly_ten_times_slower_is_throttled() -> None:
    controls = [control(throughput_obs=throughput(10 * MBIT))]
    assert analyze(measurement(throughput_obs=throughput(1 * MBIT)), controls=controls).verdict == "throttled"
    assert analyze(measurement(throughput_obs=throughput(1.01 * MBIT)), controls=controls).verdict == "ok"


def test_http_diff_flag_is_reported_when_compared() -> None:
    ok = analyze(
        measurement(**NEWS, answers=NEWS_IP),
        controls=[control()],
        control_vantage=at_control_vantage(**NEWS, answers=NEWS_IP),
    )
    assert (ok.verdict, ok.http_diff, ok.dns_consistency) == ("ok", False, "consistent")


def test_custom_fingerprints_replace_the_bundled_set() -> None:
    m = measurement(
        **LAB,
        answers=("127.0.0.1",),
        http_obs=http(LAB["url"], body_sample="Access to this resource is restricted"),
    )
    assert analyze(m, controls=[LAB_CONTROL], fingerprints=Fingerprints([])).verdict == "ok"


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (measurement(), (None, None)),
        (measurement(dns_failure="dns_refused_error"), ("dns", "dns_refused_error")),
        (measurement(answers=()), ("dns", "dns_no_answer")),
        (measurement(tcp_failure="connection_refused"), ("tcp_connect", "connection_refused")),
        (measurement(tls_failure="eof_error"), ("tls_handshake", "eof_error")),
        (
            measurement(tls_valid=False, validation_failure="ssl_invalid_hostname"),
            ("tls_handshake", "ssl_invalid_hostname"),
        ),
        (measurement(http_failure="generic_timeout_error"), ("http_request", "generic_timeout_error")),
        (
            measurement(throughput_obs=throughput(1e5, failure="generic_timeout_error")),
            ("throughput", "generic_timeout_error"),
        ),
    ],
)
def test_failing_step(m: Measurement, expected: tuple[str | None, str | None]) -> None:
    assert failing_step(m) == expected


def test_failing_step_needs_every_address_to_fail() -> None:
    m = measurement(answers=FB_FRANKFURT)
    dead = TcpObservation(address="2a03:2880::1", port=443, t0=0, t=5, failure="generic_timeout_error")
    assert failing_step(replace(m, tcp=(dead, *m.tcp))) == (None, None)


def test_plain_http_geo_dns_serving_the_same_page_is_not_dns_blocked() -> None:
    m = measurement(**NEWS, answers=("203.0.114.7",))
    cv = at_control_vantage(**NEWS, answers=NEWS_IP)
    result = analyze(m, controls=[control()], control_vantage=cv)
    # The answers are still reported as inconsistent, but the page is the real one.
    assert (result.verdict, result.dns_consistency, result.http_diff) == ("ok", "inconsistent", False)


def test_plain_http_disjoint_answers_serving_another_page_is_dns_blocked() -> None:
    page = http(NEWS["url"], body_length=700, title="Notice", headers=(), body_sample="<p>notice")
    m = measurement(**NEWS, answers=("203.0.114.7",), http_obs=page)
    cv = at_control_vantage(**NEWS, answers=NEWS_IP)
    result = analyze(m, controls=[control()], control_vantage=cv)
    assert (result.verdict, result.operation, result.failure) == ("dns_blocked", "dns", None)


def test_interception_on_an_unvouched_geo_address_is_still_mitm() -> None:
    # Geo-DNS gave this vantage its own CDN node, and the interceptor sat in front of it:
    # the answers cannot be vouched for, but a rogue chain for the name is interception.
    m = measurement(answers=("198.51.100.23",), tls_valid=False, validation_failure="ssl_unknown_authority")
    result = analyze(m, controls=[control()], control_vantage=at_control_vantage())
    assert (result.verdict, result.operation, result.failure) == (
        "tls_mitm",
        "tls_handshake",
        "ssl_unknown_authority",
    )


def test_fast_but_relatively_slower_is_not_throttling() -> None:
    # 36 Mbit/s beside a 1.4 Gbit/s control (a busy machine, a far CDN): no policer runs that fast.
    m = measurement(throughput_obs=throughput(36_000_000))
    result = analyze(m, controls=[control(throughput_obs=throughput(1_400_000_000))])
    assert result.verdict == "ok"
    assert "not a policer" in result.reason
