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


def test_a_shared_control_extended_after_it_was_stored_is_kept_inline() -> None:
    from dataclasses import replace

    from probe.control import from_vantage
    from probe.daemon.prober import _inline_if_unstored
    from probe.model import Analysis, Result

    from .test_prober_scheduler import fake

    mine, cv = fake("kz", "fb", False), fake("ctl", "fb", False)
    extended = replace(cv, tcp=cv.tcp + cv.tcp)  # what reach() returns: a new object
    ok = Analysis("ok", None, None, "ok")
    result = Result(mine, ok, from_vantage(extended, mine))
    kept = _inline_if_unstored(result, [mine, extended], {"ctl"}, fresh=set())
    assert kept.control is not None and kept.control.measurement is extended
    # Fresh (stored now, as extended) or not extended at all: its own row is what was seen.
    assert _inline_if_unstored(result, [mine, extended], {"ctl"}, fresh={("ctl", "fb")}) is result
    assert _inline_if_unstored(result, [mine, extended], set(), fresh=set()) is result
