"""`probe.lab.memnet`: the lab in memory on virtual time judges like the kernel lab, fast and
the same from run to run."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from probe.engine import measure
from probe.lab import load_scenario
from probe.lab.memnet import LATENCY, Endpoint, MemoryNetwork, VirtualLoop
from probe.lab.simulate import LoopClock, Simulation, prepare_memory, simulate, simulation_config
from probe.model import Measurement
from probe.vantage import vantage_network
from tests.simulate.conftest import rows

ALMATY_EVENING = dt.datetime.fromisoformat("2019-05-20T20:30:00+06:00")
VERDICTS = (
    "SELECT started_at, vantage, target, verdict, failure, operation, blocking, http_status, tls_issuer "
    "FROM measurements"
)


def probe_all(at: dt.datetime, tmp: Path) -> tuple[dict[tuple[str, str], Measurement], float]:
    """Every vantage x target of kazakhstan-2019 measured once at `at`, in memory; and the
    real seconds it took."""
    scenario = load_scenario("kazakhstan-2019")
    sim = Simulation(days=1)
    network = MemoryNetwork(prepare_memory(scenario, sim), tmp, lambda: at)
    config = simulation_config(network.curfew_config(), sim)
    loop = VirtualLoop(at.timestamp())
    out: dict[tuple[str, str], Measurement] = {}

    async def main() -> None:
        clock = LoopClock(loop)
        for v in config.vantages:
            net = vantage_network(v, config, network.socket)
            for t in config.targets:
                out[(v.name, t.name)] = await measure(t, net, config.probe, clock)
        await network.close()

    began = time.monotonic()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return out, time.monotonic() - began


def test_each_technique_is_seen_as_the_kernel_lab_sees_it(tmp_path: Path) -> None:
    seen, _ = probe_all(ALMATY_EVENING, tmp_path)

    def step(v: str, t: str) -> tuple[str | None, ...]:
        m = seen[(v, t)]
        return (
            m.dns.failure if m.dns else None,
            m.tcp[0].failure if m.tcp else None,
            m.tls[0].failure if m.tls else None,
            str(m.http.status) if m.http and m.http.status else None,
        )

    assert step("kz-almaty", "facebook") == (None, None, "connection_reset", None)  # tls_reset
    assert step("kz-astana", "facebook") == ("dns_nxdomain_error", None, None, None)  # dns_nxdomain
    assert step("kz-astana", "youtube")[1] == "connection_refused"  # dns_bogus: 127.0.0.1
    assert step("kz-astana", "news")[3] == "302"  # http_redirect
    assert step("kz-mobile", "instagram")[2] == "generic_timeout_error"  # tls_silence
    assert step("control", "facebook") == (None, None, None, "200")
    throttled = seen[("kz-mobile", "youtube")].throughput
    free = seen[("control", "youtube")].throughput
    assert throttled is not None and free is not None
    assert throttled.bytes < free.bytes / 10  # 150 kbit/s against a 100 Mbit/s link


def test_timeouts_and_throttling_take_virtual_time_only(tmp_path: Path) -> None:
    seen, real = probe_all(ALMATY_EVENING, tmp_path)
    silence = seen[("kz-mobile", "instagram")]
    throttled = seen[("kz-mobile", "youtube")]
    virtual = sum(m.runtime for m in seen.values())
    assert silence.runtime >= 0.5 and throttled.runtime >= 0.3  # the step timeout, the bulk cap
    assert real < virtual  # 24 probes back to back, timeouts included, in less real time


def test_tcp_drop_never_connects(tmp_path: Path) -> None:
    nine_may = dt.datetime.fromisoformat("2019-05-09T15:00:00+06:00")
    seen, _ = probe_all(nine_may, tmp_path)
    assert [o.failure for o in seen[("kz-almaty", "facebook")].tcp] == ["generic_timeout_error"]
    assert seen[("control", "facebook")].tcp[0].failure is None


@pytest.mark.parametrize("hours", [1.25])
def test_memory_and_kernel_labs_give_the_same_verdicts(tmp_path: Path, hours: float) -> None:
    # The Almaty evening begins at 20:00: every vantage's technique, the confirmations and
    # a control target, through both networks.
    start = dt.datetime.fromisoformat("2019-05-20T19:50:00+06:00")
    tables = {}
    for network in ("memory", "kernel"):
        sim = Simulation(days=hours / 24, start=start, interval=600, network=network, watch=False)
        db = tmp_path / f"{network}.db"
        asyncio.run(simulate(load_scenario("kazakhstan-2019"), sim, f"sqlite:///{db}", tmp_path / network))
        tables[network] = sorted(tuple(r.values()) for r in rows(db, VERDICTS))
    assert tables["memory"] == tables["kernel"]
    assert {r[3] for r in tables["memory"]} >= {
        "ok",
        "tls_blocked",
        "dns_blocked",
        "throttled",
        "http_blocked",
    }


UIDS_AND_CHAINS = ("peer_chain", "uid", "controls", "peers")


def without_chains(value: object) -> object:
    """A stored JSON column without the TLS peer chains and measurement uids (its own, and
    those of the controls it was judged with)."""
    if isinstance(value, str) and value.startswith(("{", "[")):
        return without_chains(json.loads(value))
    if isinstance(value, dict):
        return {k: without_chains(v) for k, v in value.items() if k not in UIDS_AND_CHAINS}
    if isinstance(value, list):
        return [without_chains(v) for v in value]
    return value


def test_two_runs_in_memory_are_identical_to_the_microsecond(tmp_path: Path) -> None:
    start = dt.datetime.fromisoformat("2019-05-20T19:50:00+06:00")
    sim = Simulation(days=1 / 24, start=start, interval=600, loss=0.05, seed=3)
    tables = []
    for n in (1, 2):
        db = tmp_path / f"run{n}.db"
        asyncio.run(simulate(load_scenario("kazakhstan-2019"), sim, f"sqlite:///{db}", tmp_path / f"s{n}"))
        # Everything but the row's id and uid and the certificates (each run's lab mints its
        # own CA): durations, rates and every step's t0/t too.
        table = rows(db, "SELECT * FROM measurements ORDER BY started_at, vantage, target")
        tables.append([{k: without_chains(v) for k, v in r.items() if k not in ("id", "uid")} for r in table])
    differ = {k for a, b in zip(*tables, strict=True) for k in a if a[k] != b[k]}
    assert differ == set(), differ
    assert any(r["failure"] is not None for r in tables[0])


def test_data_for_a_closed_socket_is_answered_with_a_reset() -> None:
    # As a kernel does: a server still writing to a client that closed gets a reset, so a
    # throttled origin stops instead of trickling its whole bulk object into nowhere.
    loop = VirtualLoop(1_000_000.0)

    async def main() -> tuple[bytes, type[BaseException] | None, float]:
        client, server = Endpoint.pair(loop)
        server.write(b"first")
        got = await client.read(100)
        client.close()
        server.write(b"after the close")  # reaches a closed socket: answered with a reset
        began = loop.time()
        try:
            for _ in range(100):  # bounded: the reset is back after one round trip
                await asyncio.sleep(LATENCY / 2)
                server.write(b"more")
        except ConnectionResetError as exc:
            return got, type(exc), loop.time() - began
        return got, None, loop.time() - began

    try:
        got, error, waited = loop.run_until_complete(main())
    finally:
        loop.close()
    assert got == b"first"
    assert error is ConnectionResetError
    assert waited <= 3 * LATENCY


def test_the_memory_network_hands_the_probe_the_kernel_labs_config(tmp_path: Path) -> None:
    # One builder for both (probe.lab.lab.scenario_config): the in-memory config used to be a
    # copy without the vantages' network keys, so a simulation exported as ZZ / AS0.
    scenario = load_scenario("kazakhstan-2019")
    network = MemoryNetwork(prepare_memory(scenario, Simulation(days=1)), tmp_path, lambda: ALMATY_EVENING)
    config = network.curfew_config()
    almaty = next(v for v in config["vantages"] if v["name"] == "kz-almaty")
    assert (almaty["probe_cc"], almaty["probe_asn"], almaty["probe_network_name"]) == (
        "KZ",
        "AS9198",
        "JSC Kazakhtelecom",
    )
    assert [t["name"] for t in config["targets"]] == [t.name for t in scenario.targets if t.probe]
    parsed = simulation_config(config, Simulation(days=1))
    assert parsed.vantage("kz-mobile").probe_asn == "AS21299"


def test_timers_fire_at_their_virtual_time_in_order_and_cancelled_ones_never() -> None:
    # 300 timers on 50 distinct deadlines, two thirds cancelled (enough for the loop to
    # sweep them out of its heap at once): the others fire at their deadline, equal
    # deadlines in the order they were set, and no real time passes.
    loop = VirtualLoop(1_000_000.0)
    fired: list[tuple[float, int]] = []
    expected: list[tuple[float, int]] = []
    start = time.monotonic()
    try:
        for i in range(300):
            when = 1_000_000.0 + (i * 37 % 50) * 0.25
            handle = loop.call_at(when, lambda when=when, i=i: fired.append((loop.time() - when, i)))
            if i % 3:
                handle.cancel()
            else:
                expected.append((when, i))
        loop.run_until_complete(asyncio.sleep(20))
    finally:
        loop.close()
    assert [i for _, i in fired] == [i for _, i in sorted(expected)]
    assert all(late == 0.0 for late, _ in fired)
    assert time.monotonic() - start < 5
