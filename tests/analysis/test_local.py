"""The analysis guard: a probe that failed on its own machine is never judged blocked or down,
and a control that failed so vouches for nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from probe.analysis.local import local_failure
from probe.analysis.verdict import analyze
from probe.model import Measurement, ThroughputObservation

from .builders import at_control_vantage, control, measurement, throughput

EMFILE = "local_failure: emfile"
JUDGED = ("dns_blocked", "tcp_blocked", "tls_blocked", "tls_mitm", "http_blocked", "throttled")
DOWN = ("vantage_down", "target_down")


def _slow_download() -> ThroughputObservation:
    return replace(throughput(100_000), failure=EMFILE, bytes=0, samples=())


# The step where the machine failed, in every place the engine records a failure.
LOCAL_AT = [
    pytest.param(measurement(dns_failure=EMFILE), "dns", id="dns"),
    pytest.param(measurement(tcp_failure=EMFILE), "tcp_connect", id="tcp_connect"),
    pytest.param(measurement(tls_failure=EMFILE), "tls_handshake", id="tls_handshake"),
    pytest.param(measurement(http_failure="local_failure: enomem"), "http_request", id="http_request"),
    pytest.param(measurement(throughput_obs=_slow_download()), "throughput", id="throughput"),
    pytest.param(
        # One address of two failed here, the other was refused: the measurement has a hole.
        measurement(answers=("157.240.0.35", "157.240.0.36"), tcp_failure="connection_refused"),
        "tcp_connect",
        id="one-address-of-two",
    ),
]


def _local_on_first_address(m: Measurement) -> Measurement:
    if len(m.tcp) < 2:
        return m
    return replace(m, tcp=(replace(m.tcp[0], failure=EMFILE), *m.tcp[1:]))


@pytest.mark.parametrize(("m", "operation"), LOCAL_AT)
def test_a_local_failure_is_found_at_its_step(m: Measurement, operation: str) -> None:
    m = _local_on_first_address(m)
    found = local_failure(m)
    assert found is not None and found[0] == operation


@pytest.mark.parametrize(("m", "operation"), LOCAL_AT)
@pytest.mark.parametrize(
    "controls",
    [
        pytest.param([control(), control("example")], id="controls-fine"),
        pytest.param([control(dns_failure="dns_servfail_error")], id="controls-failed"),
        pytest.param([control(dns_failure=EMFILE)], id="controls-local"),
        pytest.param([], id="no-controls"),
    ],
)
def test_a_local_failure_is_never_judged_blocked_or_down(
    m: Measurement, operation: str, controls: list[Measurement]
) -> None:
    m = _local_on_first_address(m)
    cv = at_control_vantage(dns_failure="dns_servfail_error")  # would make it "target_down"
    a = analyze(m, controls=controls, control_vantage=cv)
    assert a.verdict == "inconclusive"
    assert a.verdict not in JUDGED + DOWN
    assert (a.operation, a.blocking) == (operation, None)
    assert a.failure is not None and a.failure.startswith("local_failure: ")
    assert "own machine" in a.reason


def test_network_failures_are_not_local() -> None:
    assert local_failure(measurement(dns_failure="dns_nxdomain_error")) is None
    assert local_failure(measurement(tcp_failure="unknown_failure: [Errno 24] Too many open files")) is None
    assert local_failure(measurement()) is None


@pytest.mark.parametrize(
    ("target", "controls", "control_vantage", "verdict"),
    [
        # Both control targets failed on this machine at DNS: without the guard, "the target and
        # every control failed, and name resolution too" is a vantage_down (a false shutdown).
        pytest.param(
            measurement(tcp_failure="connection_refused"),
            [control(dns_failure=EMFILE), control("example", dns_failure=EMFILE)],
            None,
            "inconclusive",
            id="locally-failed-controls-are-no-controls",
        ),
        # One control is fine, one failed here: the fine one shows the vantage works.
        pytest.param(
            measurement(dns_failure="dns_nxdomain_error"),
            [control(), control("example", tcp_failure=EMFILE)],
            None,
            "dns_blocked",
            id="the-remaining-control-still-vouches",
        ),
        # The control vantage failed here: it is not "failing differently", it is absent.
        pytest.param(
            measurement(tcp_failure="connection_refused"),
            [control(), control("example")],
            at_control_vantage(tcp_failure=EMFILE),
            "tcp_blocked",
            id="a-locally-failed-control-vantage-is-absent",
        ),
        # The control vantage's own trouble never makes a target "down everywhere".
        pytest.param(
            measurement(dns_failure=EMFILE),
            [control(), control("example")],
            at_control_vantage(dns_failure=EMFILE),
            "inconclusive",
            id="local-everywhere-is-nothing",
        ),
    ],
)
def test_locally_failed_comparisons_are_left_out(
    target: Measurement, controls: list[Measurement], control_vantage: Measurement | None, verdict: str
) -> None:
    assert analyze(target, controls=controls, control_vantage=control_vantage).verdict == verdict
