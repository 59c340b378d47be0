"""A dead or slow helper never stalls a probe: the measurement is stored with the control
missing, the verdict falls back to what the vantage alone can say, and the failure is counted."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from probe.config import Config, parse_config
from probe.daemon.prober import Prober
from probe.metrics import Metrics
from probe.metrics.control import ControlFailureCollector
from probe.model import Measurement
from probe.store.mapping import result_row
from tests.daemon.test_prober_scheduler import FakeNetwork


def helper_config(*urls: str, timeout: float = 1.0) -> Config:
    return parse_config(
        {
            "helpers": [{"url": u} for u in urls],
            "probe": {"timeouts": {"helper": timeout}},
            "vantages": [{"name": "kz"}],
            "targets": [
                {"name": "fb", "url": "https://fb.lab/"},
                {"name": "wiki", "url": "https://wiki.lab/", "control": True},
            ],
        }
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ARRIVALS: list[float] = []


@pytest.fixture
async def silent_helper() -> AsyncIterator[str]:
    """Accepts, reads the request and never answers (a helper stuck or a tarpit).
    `ARRIVALS` gets the monotonic time each connection came in."""
    held: list[asyncio.StreamWriter] = []
    ARRIVALS.clear()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ARRIVALS.append(time.monotonic())
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def stored(row: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(row["observations"])  # type: ignore[no-any-return]


async def test_a_dead_helper_leaves_the_control_missing_and_is_counted() -> None:
    net = FakeNetwork()
    net.blocked.add(("kz", "fb"))
    prober = Prober(helper_config(f"http://127.0.0.1:{closed_port()}/"), measure_fn=net)
    metrics = Metrics()
    metrics.registry.register(ControlFailureCollector(prober.control_failures.snapshot))
    try:
        results = await prober.run("kz", "fb")
    finally:
        await prober.aclose()
    fb = results[0]
    # Without a control, the vantage alone: the control target resolved, so DNS is blocked.
    assert (fb.analysis.verdict, fb.analysis.failure) == ("dns_blocked", "dns_nxdomain_error")
    obs = stored(result_row(fb))
    assert obs["control"] is None
    assert obs["control_failure"] == "unknown_failure: helper unreachable"
    assert obs["x_control"]["source"].startswith("helper:http://127.0.0.1:")
    sample = metrics.registry.get_sample_value
    assert sample("curfew_control_failures_total", {"helper": "127.0.0.1", "reason": "unreachable"}) == 1
    assert sample("curfew_control_failures_total", {"helper": "127.0.0.1", "reason": "timeout"}) == 0


async def test_a_silent_helper_costs_at_most_its_deadline(silent_helper: str) -> None:
    net = FakeNetwork()
    prober = Prober(helper_config(silent_helper, timeout=0.5), measure_fn=net)
    try:
        start = time.monotonic()
        results = await prober.run("kz", "fb")
        elapsed = time.monotonic() - start
    finally:
        await prober.aclose()
    assert elapsed < 2.0
    assert results[0].analysis.verdict == "ok"
    assert stored(result_row(results[0]))["control_failure"] == "generic_timeout_error"
    assert prober.control_failures.snapshot()[("127.0.0.1", "timeout")] == 1


async def test_failover_asks_the_next_helper_within_one_deadline(silent_helper: str) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/"
    prober = Prober(helper_config(dead, silent_helper, timeout=0.5), measure_fn=FakeNetwork())
    try:
        await prober.run("kz", "fb")
    finally:
        await prober.aclose()
    counts = prober.control_failures.snapshot()
    assert counts[("127.0.0.1", "unreachable")] == 1
    assert counts[("127.0.0.1", "timeout")] == 1


async def test_control_targets_are_not_sent_to_the_helper() -> None:
    prober = Prober(helper_config(f"http://127.0.0.1:{closed_port()}/"), measure_fn=FakeNetwork())
    try:
        results = await prober.run("kz", "wiki")
    finally:
        await prober.aclose()
    assert stored(result_row(results[0]))["x_control"]["source"] is None
    assert sum(prober.control_failures.snapshot().values()) == 0


async def test_a_run_cancelled_while_asking_leaves_no_question_behind(silent_helper: str) -> None:
    # Drain cancels runs that outlive the grace period: the helper's question goes with them,
    # also when the run was still waiting for a slow control target, not for the helper.
    net = FakeNetwork()

    async def slow_controls(vantage: str, target: str) -> Measurement:
        if target == "wiki":
            await asyncio.sleep(30)
        return await net(vantage, target)

    prober = Prober(helper_config(silent_helper, timeout=30.0), measure_fn=slow_controls)
    try:
        run = asyncio.ensure_future(prober.run("kz", "fb"))
        await asyncio.sleep(0.5)
        assert not run.done()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await asyncio.sleep(0.2)  # a cancelled question ends at once; a forgotten one waits 30 s
        pending = [t for t in asyncio.all_tasks() if not t.done() and "HelperPool.ask" in repr(t.get_coro())]
        assert pending == []
    finally:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and "_measure" in repr(task.get_coro()):
                task.cancel()
        await prober.aclose()


async def test_the_helper_is_asked_while_the_probe_is_still_running(silent_helper: str) -> None:
    # The target is a silent server too: the probe waits out its HTTP deadline, and the
    # question to the helper went out as soon as the name (here an address) was known.
    async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(tarpit, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = parse_config(
        {
            "helpers": [{"url": silent_helper}],
            "probe": {"timeouts": {"helper": 3.0, "http_request": 1.5, "total": 5.0}},
            "vantages": [{"name": "kz"}],
            "targets": [{"name": "slow", "url": f"http://127.0.0.1:{port}/"}],
        }
    )
    prober = Prober(config)
    try:
        start = time.monotonic()
        results = await prober.run("kz", "slow")
    finally:
        await prober.aclose()
        server.close()
        await server.wait_closed()
    probe_end = start + results[0].measurement.runtime
    assert results[0].measurement.runtime >= 1.4  # the probe really waited
    assert ARRIVALS and ARRIVALS[0] < probe_end - 1.0, (ARRIVALS, probe_end)
