"""The control vantage's own verdict: target_down, inconclusive or ok, never a block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from probe.analysis.control_vantage import analyze_control_vantage
from probe.model import VERDICTS, Measurement

from .builders import MITM_ISSUER, control, measurement, throughput

CV = "control-de"


def at_cv(target: str = "facebook", **kwargs: object) -> Measurement:
    return measurement(target, vantage=CV, **kwargs)  # type: ignore[arg-type]


def peer(vantage: str, **kwargs: object) -> Measurement:
    return measurement("facebook", vantage=vantage, **kwargs)  # type: ignore[arg-type]


def cv_controls(**kwargs: object) -> list[Measurement]:
    return [control(vantage=CV, **kwargs), control("example", vantage=CV, **kwargs)]  # type: ignore[arg-type]


@dataclass
class Row:
    target: Measurement
    peers: Sequence[Measurement] = ()
    controls: Sequence[Measurement] = field(default_factory=cv_controls)


REFUSED = {"tcp_failure": "connection_refused"}
TABLE = [
    pytest.param(Row(at_cv(), peers=[peer("kz-almaty")]), ("ok", None, None), id="ok"),
    pytest.param(
        # The new user's case: the target refuses connections everywhere.
        Row(at_cv(**REFUSED), peers=[peer("kz-almaty", **REFUSED), peer("kz-astana", **REFUSED)]),
        ("target_down", "tcp_connect", "connection_refused"),
        id="refused_everywhere_is_target_down",
    ),
    pytest.param(
        # One peer is censored by DNS (it never got to connect), another fails like the control.
        Row(
            at_cv(**REFUSED),
            peers=[peer("kz-astana", dns_failure="dns_nxdomain_error"), peer("kz-almaty", **REFUSED)],
        ),
        ("target_down", "tcp_connect", "connection_refused"),
        id="down_while_another_vantage_is_dns_censored",
    ),
    pytest.param(
        Row(
            at_cv(tcp_failure="generic_timeout_error"),
            peers=[peer("kz-almaty", tcp_failure="connection_reset")],
        ),
        ("inconclusive", "tcp_connect", "generic_timeout_error"),
        id="peers_fail_differently",
    ),
    pytest.param(
        Row(at_cv(tls_failure="connection_reset"), peers=[peer("kz-almaty", tls_failure="eof_error")]),
        ("target_down", "tls_handshake", "connection_reset"),
        id="reset_and_eof_are_one_family",
    ),
    pytest.param(
        Row(at_cv(**REFUSED), peers=[peer("kz-almaty", **REFUSED), peer("kz-mobile")]),
        ("inconclusive", "tcp_connect", "connection_refused"),
        id="another_vantage_reached_it",
    ),
    pytest.param(
        Row(at_cv(tls_failure="connection_reset"), peers=[]),
        ("inconclusive", "tls_handshake", "connection_reset"),
        id="no_peer_to_compare_is_not_tls_blocked",
    ),
    pytest.param(
        Row(
            at_cv(dns_failure="dns_nxdomain_error"),
            peers=[peer("kz-almaty", dns_failure="dns_nxdomain_error")],
        ),
        ("target_down", "dns", "dns_nxdomain_error"),
        id="name_gone_everywhere",
    ),
    pytest.param(
        Row(at_cv(dns_failure="dns_nxdomain_error"), peers=[peer("kz-almaty")]),
        ("inconclusive", "dns", "dns_nxdomain_error"),
        id="dns_failure_only_at_the_control_is_not_dns_blocked",
    ),
    pytest.param(
        Row(
            at_cv(tls_valid=False, validation_failure="ssl_unknown_authority", issuer=MITM_ISSUER),
            peers=[peer("kz-almaty")],
        ),
        ("inconclusive", "tls_handshake", "ssl_unknown_authority"),
        id="invalid_chain_at_the_control_is_not_mitm",
    ),
    pytest.param(
        Row(
            at_cv(throughput_obs=throughput(100_000)),
            controls=cv_controls(throughput_obs=throughput(50_000_000)),
        ),
        ("ok", None, None),
        id="slow_download_at_the_control_is_not_throttled",
    ),
    pytest.param(
        Row(
            at_cv(dns_failure="generic_timeout_error"),
            peers=[peer("kz-almaty")],
            controls=cv_controls(dns_failure="generic_timeout_error"),
        ),
        ("vantage_down", "dns", "generic_timeout_error"),
        id="control_vantage_cut_off",
    ),
    pytest.param(
        Row(at_cv(**REFUSED), peers=[peer("kz-almaty", **REFUSED)], controls=cv_controls(**REFUSED)),
        ("inconclusive", "tcp_connect", "connection_refused"),
        id="every_control_target_failed_too",
    ),
]


@pytest.mark.parametrize(("row", "expected"), TABLE)
def test_control_vantage_table(row: Row, expected: tuple[str, str | None, str | None]) -> None:
    result = analyze_control_vantage(row.target, controls=row.controls, peers=row.peers)
    assert (result.verdict, result.operation, result.failure) == expected, result.reason
    assert result.blocking is None
    assert result.reason and "\n" not in result.reason


def test_a_control_vantage_is_never_blocked() -> None:
    seen = {
        analyze_control_vantage(
            p.values[0].target, controls=p.values[0].controls, peers=p.values[0].peers
        ).verdict
        for p in TABLE
    }  # type: ignore[union-attr]
    assert seen == {"ok", "target_down", "inconclusive", "vantage_down"}
    assert seen <= set(VERDICTS)


def test_peers_of_another_target_do_not_count() -> None:
    other = measurement("youtube", vantage="kz-almaty", tcp_failure="connection_refused")
    result = analyze_control_vantage(at_cv(**REFUSED), controls=cv_controls(), peers=[other])
    assert result.verdict == "inconclusive"
