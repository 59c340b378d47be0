"""One test per censorship technique: the real probe against the lab, asserting the verdict,
the failing operation and the OONI failure string - and that the control vantage sees `ok`."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from tests.integration.conftest import CENSORED, CONTROL_VANTAGE, probe_lab, scenario, summary


def rule(action: str, **params: object) -> dict[str, object]:
    return {"action": action, "vantages": [CENSORED], "targets": ["site"], **params}


async def check(
    tmp_path: Path, action: str, expected: tuple[str, str | None, str | None], **params: object
) -> None:
    results = await probe_lab(tmp_path, scenario([rule(action, **params)]))
    assert summary(results[(CENSORED, "site")]) == expected, results[(CENSORED, "site")].analysis.reason
    assert summary(results[(CONTROL_VANTAGE, "site")]) == ("ok", None, None)
    assert summary(results[(CENSORED, "wiki")]) == ("ok", None, None)


async def test_no_censorship_is_ok(tmp_path: Path) -> None:
    results = await probe_lab(tmp_path, scenario())
    for key, result in results.items():
        assert summary(result) == ("ok", None, None), key
    m = results[(CENSORED, "site")].measurement
    assert m.http is not None and m.http.title == "The Site"
    assert m.tls[0].valid is True
    assert m.throughput is not None and m.throughput.bps is not None


async def test_dns_nxdomain(tmp_path: Path) -> None:
    await check(tmp_path, "dns_nxdomain", ("dns_blocked", "dns", "dns_nxdomain_error"))


async def test_dns_servfail(tmp_path: Path) -> None:
    await check(tmp_path, "dns_servfail", ("dns_blocked", "dns", "dns_servfail_error"))


async def test_dns_timeout(tmp_path: Path) -> None:
    await check(tmp_path, "dns_timeout", ("dns_blocked", "dns", "generic_timeout_error"))


async def test_dns_bogus_loopback_answer(tmp_path: Path) -> None:
    # 127.0.0.1 serves nothing on the site's port, as real resolvers have answered.
    await check(tmp_path, "dns_bogus", ("dns_blocked", "dns", "dns_bogon_error"))


async def test_tcp_reset_after_accept(tmp_path: Path) -> None:
    await check(tmp_path, "tcp_reset", ("tcp_blocked", "tcp_connect", "connection_reset"))


async def test_tcp_syn_drop(tmp_path: Path) -> None:
    await check(tmp_path, "tcp_drop", ("tcp_blocked", "tcp_connect", "generic_timeout_error"))


async def test_tls_reset_after_client_hello(tmp_path: Path) -> None:
    await check(tmp_path, "tls_reset", ("tls_blocked", "tls_handshake", "connection_reset"))


async def test_tls_silence_after_client_hello(tmp_path: Path) -> None:
    await check(tmp_path, "tls_silence", ("tls_blocked", "tls_handshake", "generic_timeout_error"))


async def test_tls_interception_records_the_rogue_chain(tmp_path: Path) -> None:
    results = await probe_lab(tmp_path, scenario([rule("tls_mitm")]))
    result = results[(CENSORED, "site")]
    assert summary(result) == ("tls_mitm", "tls_handshake", "ssl_unknown_authority")
    m = result.measurement
    assert m.tls_issuer == "C=KZ, CN=Security Certificate"
    chain = m.tls[0].peer_chain
    assert [c.issuer for c in chain][-1] == "CN=Qaznet Trust Network"
    assert all(len(c.sha256) == 64 for c in chain)
    # The rogue certificates themselves are kept (base64 DER, OONI's peer_certificates).
    assert all(hashlib.sha256(base64.b64decode(c.der or "")).hexdigest() == c.sha256 for c in chain)
    assert m.http is not None and m.http.status == 200  # the interceptor relays the page
    control_tls = results[(CONTROL_VANTAGE, "site")].measurement.tls[0]
    assert control_tls.valid is True
    assert all(c.der is None for c in control_tls.peer_chain)  # a valid chain is no evidence


async def test_http_blockpage(tmp_path: Path) -> None:
    news = {
        "name": "news",
        "hosts": ["news.lab"],
        "address": "127.0.3.3",
        "port": 0,
        "scheme": "http",
        "title": "News",
    }
    data = scenario(
        [{"action": "http_blockpage", "vantages": [CENSORED], "targets": ["news"]}], targets=[news]
    )
    results = await probe_lab(tmp_path, data)
    result = results[(CENSORED, "news")]
    assert summary(result) == ("http_blocked", "http_request", None)
    assert result.analysis.fingerprint == "lab_blockpage"
    assert summary(results[(CONTROL_VANTAGE, "news")]) == ("ok", None, None)


async def test_http_redirect_to_warning_page(tmp_path: Path) -> None:
    news = {
        "name": "news",
        "hosts": ["news.lab"],
        "address": "127.0.3.3",
        "port": 0,
        "scheme": "http",
        "title": "News",
    }
    warning = {
        "name": "warning",
        "hosts": ["warning.lab"],
        "address": "127.0.3.7",
        "port": 0,
        "scheme": "http",
        "probe": False,
    }
    data = scenario(
        [{"action": "http_redirect", "vantages": [CENSORED], "targets": ["news"]}], targets=[news, warning]
    )
    results = await probe_lab(tmp_path, data)
    result = results[(CENSORED, "news")]
    assert summary(result) == ("http_blocked", "http_request", None)
    assert result.measurement.http is not None and result.measurement.http.status == 302


async def test_throttling_to_150_kbps(tmp_path: Path) -> None:
    results = await probe_lab(tmp_path, scenario([rule("throttle", rate_bps=150_000)]))
    result = results[(CENSORED, "site")]
    assert summary(result) == ("throttled", "throughput", None), result.analysis.reason
    bps = result.measurement.throughput.bps if result.measurement.throughput else None
    assert bps is not None and 100_000 < bps < 200_000
    assert result.analysis.throughput_ratio is not None and result.analysis.throughput_ratio <= 0.1


async def test_whole_vantage_blackhole_is_vantage_down(tmp_path: Path) -> None:
    results = await probe_lab(tmp_path, scenario([{"action": "blackhole", "vantages": [CENSORED]}]))
    for target in ("site", "wiki"):
        assert results[(CENSORED, target)].analysis.verdict == "vantage_down"
        assert summary(results[(CONTROL_VANTAGE, target)]) == ("ok", None, None)


# Negative controls: things that look like censorship and are not.


async def test_target_down_everywhere_is_not_censorship(tmp_path: Path) -> None:
    gone = {"name": "gone", "hosts": ["gone.lab"], "address": "127.0.3.4", "port": 0, "down": True}
    results = await probe_lab(tmp_path, scenario(targets=[gone]))
    assert summary(results[(CENSORED, "gone")]) == ("target_down", "tcp_connect", "connection_refused")
    # The control vantage is judged too: the same refusal there is the outage, not a block.
    assert summary(results[(CONTROL_VANTAGE, "gone")]) == ("target_down", "tcp_connect", "connection_refused")


async def test_congestion_that_slows_the_control_too_is_not_throttling(tmp_path: Path) -> None:
    slow_both = {
        "action": "congestion",
        "rate_bps": 400_000,
        "vantages": [CENSORED],
        "targets": ["site", "wiki"],
    }
    # Evening congestion slows everything at the vantage, the control target included.
    results = await probe_lab(tmp_path, scenario([slow_both]))
    site = results[(CENSORED, "site")]
    assert summary(site) == ("ok", None, None), site.analysis.reason
    assert site.measurement.throughput is not None and site.measurement.throughput.bps is not None
    assert site.measurement.throughput.bps < 600_000  # it really was slow
    assert site.analysis.throughput_ratio is not None and site.analysis.throughput_ratio > 0.1


async def test_geo_dns_answers_that_validate_over_tls_are_genuine(tmp_path: Path) -> None:
    geo_site = {
        "name": "cdn",
        "hosts": ["cdn.site.lab"],
        "address": "127.0.3.5",
        "port": 0,
        "geo": {CENSORED: "127.0.3.6"},
    }
    results = await probe_lab(tmp_path, scenario(targets=[geo_site]))
    censored = results[(CENSORED, "cdn")]
    control = results[(CONTROL_VANTAGE, "cdn")]
    assert censored.measurement.dns is not None and control.measurement.dns is not None
    assert set(censored.measurement.dns.answers).isdisjoint(control.measurement.dns.answers)
    assert summary(censored) == ("ok", None, None), censored.analysis.reason
    assert censored.analysis.dns_consistency == "consistent"


@pytest.mark.parametrize("action", ["tls_silence", "tcp_drop", "dns_timeout"])
async def test_a_silent_censor_ends_within_the_probe_deadline(tmp_path: Path, action: str) -> None:
    results = await probe_lab(tmp_path, scenario([rule(action)]))
    m = results[(CENSORED, "site")].measurement
    assert m.runtime < 8.0 + 0.5
