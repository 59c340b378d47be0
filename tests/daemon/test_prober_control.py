"""The daemon judges the control vantage's own measurements: target_down or inconclusive, never blocked."""

from __future__ import annotations

from probe.daemon.prober import Prober

from .test_prober_scheduler import FakeNetwork, config


async def test_a_target_gone_everywhere_is_target_down_at_the_control_vantage() -> None:
    net = FakeNetwork()
    net.blocked |= {("kz", "fb"), ("ctl", "fb")}
    prober = Prober(config(), measure_fn=net)
    results = await prober.run("ctl", "fb")
    assert (results[0].measurement.vantage, results[0].analysis.verdict) == ("ctl", "target_down")
    # The peer measured for it is a real measurement, stored and judged like any other.
    peer = next(r for r in results if r.measurement.vantage == "kz" and r.measurement.target == "fb")
    assert peer.analysis.verdict == "target_down"


async def test_a_failure_at_the_control_vantage_alone_is_inconclusive() -> None:
    net = FakeNetwork()
    net.blocked.add(("ctl", "fb"))
    prober = Prober(config(), measure_fn=net)
    results = await prober.run("ctl", "fb")
    assert (results[0].analysis.verdict, results[0].analysis.failure) == (
        "inconclusive",
        "dns_nxdomain_error",
    )


async def test_a_working_control_vantage_does_not_probe_the_other_vantages() -> None:
    net = FakeNetwork()
    prober = Prober(config(), measure_fn=net)
    results = await prober.run("ctl", "fb")
    assert results[0].analysis.verdict == "ok"
    assert {(v, t) for v, t, _ in net.calls} == {("ctl", "fb"), ("ctl", "wiki")}
