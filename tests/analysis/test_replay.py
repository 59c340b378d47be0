"""Stored measurements judged again from their observations JSON, the control inside it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from probe.analysis.replay import measurement_from_dict, rejudge
from probe.analysis.verdict import analyze
from probe.control import endpoints, from_helper, from_vantage, no_control
from probe.helper.answer import Attempt, HelperAnswer
from probe.helper.control import th_response
from probe.helper.protocol import FLAG_RESOLVED_BY_PROBE, FLAG_VALID_FOR_DOMAIN, THIpInfo
from probe.model import Measurement, Result
from probe.store.mapping import result_row

from .builders import MITM_ISSUER, also_reached, at_control_vantage, control, measurement, throughput

HELPER = "helper.example"


def stored(result: Result) -> dict[str, Any]:
    return orjson.loads(result_row(result)["observations"])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "m",
    [
        measurement(throughput_obs=throughput(150_000)),
        measurement(tls_valid=False, validation_failure="ssl_unknown_authority", issuer=MITM_ISSUER),
        measurement(tcp_failure="connection_refused", idle_reset=True),
        measurement(dns_failure="dns_nxdomain_error"),
        measurement(url="http://news.example/", host="news.example"),
    ],
    ids=["throughput", "mitm_chain", "tcp_failure", "dns_failure", "plain_http"],
)
def test_a_measurement_comes_back_from_its_dict(m: Measurement) -> None:
    assert measurement_from_dict(orjson.loads(orjson.dumps(m.to_dict()))) == m


def test_a_helper_verdict_is_judged_again_from_the_stored_answer() -> None:
    # kz-astana's address was validated by the helper; the vantage's handshake is reset.
    m = measurement(answers=("31.13.72.36",), tls_failure="connection_reset")
    helper_view = also_reached(at_control_vantage(answers=("157.240.0.35",)), ("31.13.72.36",))
    answer = HelperAnswer(th_response(helper_view, endpoints(m)), HELPER)
    controls = [control()]
    reference, record = from_helper(answer, m, controls)
    analysis = analyze(m, controls=controls, control_vantage=reference)
    assert analysis.verdict == "tls_blocked"
    obs = stored(Result(m, analysis, record))
    assert obs["control"]["ip_info"]["31.13.72.36"]["flags"] & 8  # valid for the domain
    assert obs["control_failure"] is None
    lookup = {c.uid: stored(Result(c, analyze(c))) for c in controls}
    assert rejudge(obs, lookup) == analysis


def test_a_dead_helper_is_stored_as_the_control_failure() -> None:
    m = measurement(tls_failure="connection_reset")
    reference, record = from_helper(HelperAnswer(None, None, (Attempt(HELPER, "timeout", "15 s"),)), m)
    assert reference is None
    analysis = analyze(m, controls=[control()])
    obs = stored(Result(m, analysis, record))
    assert (obs["control"], obs["control_failure"]) == (None, "generic_timeout_error")
    assert obs["x_control"]["source"] == f"helper:{HELPER}"


def test_a_control_vantage_verdict_is_judged_again_from_its_stored_measurement() -> None:
    m = measurement(answers=("31.13.72.36",), tcp_failure="generic_timeout_error")
    cv = also_reached(at_control_vantage(answers=("157.240.0.35",)), ("31.13.72.36",))
    c = control()
    analysis = analyze(m, controls=[c], control_vantage=cv)
    assert analysis.verdict == "tcp_blocked"
    obs = stored(Result(m, analysis, from_vantage(cv, m, [c])))
    assert obs["control"]["tcp_connect"]["31.13.72.36:443"] == {"status": True, "failure": None}
    # The control vantage's measurement is its own row, named by uid, not a second copy.
    assert obs["x_control"]["uid"] == cv.uid and "measurement" not in obs["x_control"]
    lookup = {c.uid: stored(Result(c, analyze(c))), cv.uid: stored(Result(cv, analyze(cv)))}
    assert rejudge(obs, lookup) == analysis


def test_a_control_vantage_measurement_not_stored_as_seen_is_kept_inline() -> None:
    m = measurement(answers=("31.13.72.36",), tcp_failure="generic_timeout_error")
    cv = also_reached(at_control_vantage(answers=("157.240.0.35",)), ("31.13.72.36",))
    c = control()
    analysis = analyze(m, controls=[c], control_vantage=cv)
    obs = stored(Result(m, analysis, from_vantage(cv, m, [c], inline=True)))
    assert obs["x_control"]["measurement"]["tls"][-1]["address"] == "31.13.72.36"
    assert rejudge(obs, {c.uid: stored(Result(c, analyze(c)))}) == analysis


def test_a_control_target_that_retention_deleted_is_left_out() -> None:
    m = measurement(tcp_failure="connection_refused")
    c = control()
    analysis = analyze(m, controls=[c])
    assert analysis.verdict == "tcp_blocked"
    obs = stored(Result(m, analysis, no_control([c])))
    assert rejudge(obs, {}).verdict == "inconclusive"  # no control target left to vouch


def test_a_row_from_before_controls_were_kept_is_judged_without_them() -> None:
    m = measurement()
    obs = stored(Result(m, analyze(m)))
    assert "x_control" not in obs
    assert rejudge(obs, {}).verdict == "ok"


def test_ip_info_vouches_for_a_plain_http_address_the_helper_validated_over_tls() -> None:
    # http:// target, geo-DNS: the vantage's address is SYN-dropped. The helper's handshake on
    # 443 with the name validated it (ip_info flag 8): TCP blocking, not lying DNS.
    news = {"url": "http://news.example/", "host": "news.example"}
    m = measurement(**news, answers=("31.13.72.36",), tcp_failure="generic_timeout_error")  # type: ignore[arg-type]
    helper_view = at_control_vantage(**news, answers=("157.240.0.35",))  # type: ignore[arg-type]
    response = th_response(helper_view, endpoints(m))
    flagged = dict(response.ip_info) | {
        "31.13.72.36": THIpInfo(0, FLAG_RESOLVED_BY_PROBE | FLAG_VALID_FOR_DOMAIN)
    }
    answer = HelperAnswer(replace(response, ip_info=flagged), HELPER)
    reference, _ = from_helper(answer, m)
    assert analyze(m, controls=[control()], control_vantage=reference).verdict == "tcp_blocked"
    # Without the flag the disjoint answers are all there is: DNS.
    reference, _ = from_helper(HelperAnswer(response, HELPER), m)
    assert analyze(m, controls=[control()], control_vantage=reference).verdict == "dns_blocked"
