"""The daemon's own failures (out of descriptors, memory, local ports) are not measurements.

Prober and Scheduler with a fake network whose probes fail with `local_failure: emfile`, as the
engine records a socket that could not be opened: nothing is judged or handed on for storing,
the failure is counted by reason and logged, and the pair's confirmation state is untouched.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from probe.daemon.prober import Prober, own_result
from probe.daemon.scheduler import Scheduler
from probe.model import DnsObservation, Measurement, Result
from tests.daemon.test_prober_scheduler import FakeNetwork, config, fake

EMFILE = "local_failure: emfile"


class ShortOfDescriptors(FakeNetwork):
    """The fake network, except that probes of the pairs in `local` cannot open a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.local: set[tuple[str, str]] = set()

    async def __call__(self, vantage: str, target: str) -> Measurement:
        if (vantage, target) not in self.local:
            return await super().__call__(vantage, target)
        self.calls.append((vantage, target, asyncio.get_running_loop().time()))
        host = f"{target}.lab"
        dns = DnsObservation(host, "r", "udp", 0.0, 0.001, (), EMFILE)
        return Measurement(vantage, target, f"https://{host}/", datetime.now(UTC), 0.001, dns=dns)


def pairs(results: list[Result]) -> list[tuple[str, str]]:
    return [(r.measurement.vantage, r.measurement.target) for r in results]


async def test_a_pair_that_failed_locally_has_no_result_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = ShortOfDescriptors()
    net.local.add(("kz", "fb"))
    counted: list[str] = []
    prober = Prober(config(), measure_fn=net, on_local_failure=counted.append)
    with caplog.at_level(logging.WARNING, logger="curfew.prober"):
        results = await prober.run("kz", "fb")
    # The controls measured the network: they are real results; the pair's own probe is not.
    assert pairs(results) == [("kz", "wiki"), ("ctl", "fb")]
    assert all(r.analysis.verdict == "ok" for r in results)
    assert counted == ["emfile"]
    lines = [r.getMessage() for r in caplog.records if "event=local-failure" in r.getMessage()]
    assert lines == ["event=local-failure vantage=kz target=fb operation=dns reason=emfile stored=no"]


async def test_a_control_that_failed_locally_vouches_for_nothing() -> None:
    net = ShortOfDescriptors()
    net.blocked.add(("kz", "fb"))  # a real block at the vantage ...
    net.local.add(("ctl", "fb"))  # ... while the control vantage's probe of it failed here
    net.local.add(("kz", "wiki"))  # and so did the only control target's
    counted: list[str] = []
    prober = Prober(config(), measure_fn=net, on_local_failure=counted.append)
    results = await prober.run("kz", "fb")
    assert pairs(results) == [("kz", "fb")]
    # With no control standing, it cannot be pinned on the censor; it is never vantage_down or
    # target_down on the strength of the machine's own failures.
    assert results[0].analysis.verdict == "inconclusive"
    assert counted == ["emfile", "emfile"]
    # A shared control that failed here is not reused: the next run measures it again.
    net.local.clear()
    again = await prober.run("kz", "fb")
    assert pairs(again) == [("kz", "fb"), ("kz", "wiki"), ("ctl", "fb")]
    assert again[0].analysis.verdict == "dns_blocked"
    assert counted == ["emfile", "emfile"]


async def test_the_scheduler_neither_stores_nor_confirms_a_local_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = ShortOfDescriptors()
    net.local |= {("kz", "fb"), ("kz", "wiki"), ("ctl", "fb"), ("ctl", "wiki")}
    results: list[Result] = []
    counted: list[str] = []
    prober = Prober(config(interval=1), measure_fn=net, on_local_failure=counted.append)
    scheduler = Scheduler(prober, results.extend)
    caplog.set_level(logging.WARNING)
    scheduler.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(counted) < 8:
            assert loop.time() < deadline, counted
            await asyncio.sleep(0.05)
    finally:
        cancelled = await scheduler.drain(1.0)
    assert cancelled == 0
    assert results == []
    assert scheduler.states == {}  # no verdict was seen, so none is being confirmed
    assert set(counted) == {"emfile"}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # no traceback


async def test_own_result_is_the_pairs_own_or_none() -> None:
    net = ShortOfDescriptors()
    prober = Prober(config(), measure_fn=net)
    measured = await prober.run("kz", "fb")
    assert own_result(("kz", "fb"), measured) is measured[0]
    net.local.add(("kz", "fb"))
    prober = Prober(config(), measure_fn=net)
    controls_only = await prober.run("kz", "fb")
    assert controls_only and own_result(("kz", "fb"), controls_only) is None
    assert own_result(("kz", "fb"), []) is None


async def test_a_control_extended_while_short_of_descriptors_is_kept_as_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control vantage connects to the addresses the vantage resolved (as a helper would);
    if that fails on this machine, the control is stored as it was, with no local hole."""
    from dataclasses import replace

    from probe.daemon import prober as prober_module
    from probe.model import TcpObservation

    async def measure(target: Any, net: Any, settings: Any, clock: Any, **_: Any) -> Measurement:
        m = fake(net.name, target.name, blocked=False)
        if net.name == "kz" and m.dns is not None:  # a geo-DNS answer the control vantage did not get
            m = replace(m, dns=replace(m.dns, answers=("127.0.9.7",)))
        return m

    async def reach(
        config: Any, network: Any, control: Measurement, addresses: Any, clock: Any
    ) -> Measurement:
        hole = TcpObservation(addresses[0], 443, 0.0, 0.001, failure=EMFILE)
        return replace(control, tcp=(*control.tcp, hole))

    monkeypatch.setattr(prober_module, "measure", measure)
    monkeypatch.setattr(prober_module, "reach", reach)
    prober = Prober(config())
    results = await prober.run("kz", "fb")
    assert pairs(results) == [("kz", "fb"), ("kz", "wiki"), ("ctl", "fb")]
    stored_control = results[2].measurement
    assert [obs.failure for obs in stored_control.tcp] == [None]
    assert all(r.analysis.failure is None or "local_failure" not in r.analysis.failure for r in results)
