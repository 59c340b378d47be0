"""A reload (`Prober.swap`) while runs are in flight: a run started before it finishes with the
config it started with, even when the reload removed its target or vantage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import probe.daemon.prober as prober_module
from probe.config import Config, Target, parse_config
from probe.daemon.prober import Prober
from probe.model import Measurement
from probe.vantage import VantageNetwork
from tests.daemon.test_prober_scheduler import fake


def config(targets: list[str], vantages: list[str]) -> Config:
    return parse_config(
        {
            "max_concurrency": 1,
            "vantages": [{"name": v} for v in vantages],
            "targets": [{"name": t, "url": f"https://{t}.lab/"} for t in targets],
        }
    )


async def test_a_run_queued_at_the_gate_survives_a_reload_that_removes_its_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    measured: list[tuple[str, str]] = []

    async def measure(target: Target, net: VantageNetwork, *_: Any, **__: Any) -> Measurement:
        if target.name == "fb":
            await release.wait()  # holds the only slot of the gate
        measured.append((net.name, target.name))
        return fake(net.name, target.name, blocked=False)

    monkeypatch.setattr(prober_module, "measure", measure)
    prober = Prober(config(["fb", "gone"], ["kz", "old"]))
    first = asyncio.ensure_future(prober.run("kz", "fb"))
    queued = asyncio.ensure_future(prober.run("old", "gone"))  # waits at the gate
    for _ in range(5):
        await asyncio.sleep(0)
    prober.swap(config(["fb"], ["kz"]))  # the reload drops target "gone" and vantage "old"
    release.set()
    results = await asyncio.wait_for(asyncio.gather(first, queued), 5)
    assert [[(r.measurement.vantage, r.measurement.target) for r in rs] for rs in results] == [
        [("kz", "fb")],
        [("old", "gone")],
    ]
    assert sorted(measured) == [("kz", "fb"), ("old", "gone")]


async def test_a_run_whose_probe_outlasts_the_old_helper_pool_still_asks_a_helper() -> None:
    # The helper refuses connections (nothing listens on loopback port 1): its failure is
    # counted, which shows it was asked.
    cfg = parse_config(
        {
            "vantages": [{"name": "kz"}],
            "targets": [{"name": "fb", "url": "https://fb.lab/"}],
            "helpers": [{"url": "http://127.0.0.1:1/"}],
            "probe": {"timeouts": {"helper": 0.1}},
        }
    )

    async def slow(vantage: str, target: str) -> Measurement:
        await asyncio.sleep(1.5)  # longer than the old pool is kept (helper timeout + 1 s)
        return fake(vantage, target, blocked=False)

    prober = Prober(cfg, measure_fn=slow)
    try:
        run = asyncio.ensure_future(prober.run("kz", "fb"))
        await asyncio.sleep(0.05)
        prober.swap(cfg)  # a SIGHUP that changes nothing
        results = await asyncio.wait_for(run, 10)
        assert [(r.measurement.vantage, r.measurement.target) for r in results] == [("kz", "fb")]
        assert sum(prober.control_failures.snapshot().values()) == 1
        assert results[0].control is not None
    finally:
        await prober.aclose()


async def test_closing_the_prober_closes_the_helper_clients_a_reload_replaced() -> None:
    cfg = parse_config(
        {
            "vantages": [{"name": "kz"}],
            "targets": [{"name": "fb", "url": "https://fb.lab/"}],
            "helpers": [{"url": "http://127.0.0.1:1/"}],
        }
    )
    prober = Prober(cfg)
    old = prober.helpers
    assert old is not None
    clients = [c._client for c in old._clients.values()]
    prober.swap(cfg)  # the old pool would be closed helper timeout + 1 s (16 s) later
    await prober.aclose()  # the daemon stops now
    assert clients and all(c.is_closed for c in clients)


async def test_a_replaced_helper_pool_closes_itself_after_its_delay() -> None:
    cfg = parse_config(
        {
            "vantages": [{"name": "kz"}],
            "targets": [{"name": "fb", "url": "https://fb.lab/"}],
            "helpers": [{"url": "http://127.0.0.1:1/"}],
            "probe": {"timeouts": {"helper": 0.01}},
        }
    )
    prober = Prober(cfg)
    old = prober.helpers
    assert old is not None
    clients = [c._client for c in old._clients.values()]
    prober.swap(cfg)
    await asyncio.sleep(1.3)  # helper timeout + 1 s
    assert old.closed and clients and all(c.is_closed for c in clients)
    prober.swap(cfg)
    assert prober._retired == [prober._retired[-1]]  # the closed pool is forgotten
    await prober.aclose()
