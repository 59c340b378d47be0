"""Prober and Scheduler with a fake network: controls shared, adaptive re-probing, drain."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from probe.config import Config, parse_config
from probe.daemon.prober import Prober
from probe.daemon.scheduler import Scheduler
from probe.model import DnsObservation, HttpObservation, Measurement, Result, TcpObservation, TlsObservation


def config(interval: float = 60, confirm_interval: float = 30, **extra: object) -> Config:
    return parse_config(
        {
            "interval": interval,
            "confirm_interval": confirm_interval,
            "confirm_count": 2,
            "vantages": [{"name": "kz"}, {"name": "ctl", "control": True}],
            "targets": [
                {"name": "fb", "url": "https://fb.lab/"},
                {"name": "wiki", "url": "https://wiki.lab/", "control": True},
            ],
            **extra,
        }
    )


def fake(vantage: str, target: str, blocked: bool) -> Measurement:
    host = f"{target}.lab"
    now = datetime.now(UTC)
    if blocked:
        dns = DnsObservation(host, "r", "udp", 0.0, 0.01, (), "dns_nxdomain_error")
        return Measurement(vantage, target, f"https://{host}/", now, 0.01, dns=dns)
    dns = DnsObservation(host, "r", "udp", 0.0, 0.01, ("127.0.9.1",))
    tcp = (TcpObservation("127.0.9.1", 443, 0.01, 0.02),)
    tls = (TlsObservation("127.0.9.1", 443, host, 0.02, 0.03, valid=True),)
    http = HttpObservation(
        f"https://{host}/", "127.0.9.1", 0.03, 0.04, status=200, title=target, body_length=100
    )
    return Measurement(vantage, target, f"https://{host}/", now, 0.04, dns=dns, tcp=tcp, tls=tls, http=http)


class FakeNetwork:
    def __init__(self) -> None:
        self.blocked: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str, float]] = []
        self.delay = 0.0

    async def __call__(self, vantage: str, target: str) -> Measurement:
        self.calls.append((vantage, target, asyncio.get_running_loop().time()))
        await asyncio.sleep(self.delay)
        return fake(vantage, target, (vantage, target) in self.blocked)


async def test_a_run_measures_the_pair_and_its_stale_controls_once() -> None:
    net = FakeNetwork()
    prober = Prober(config(), measure_fn=net)
    first = await prober.run("kz", "fb")
    assert [(r.measurement.vantage, r.measurement.target) for r in first] == [
        ("kz", "fb"),
        ("kz", "wiki"),
        ("ctl", "fb"),
    ]
    assert first[0].analysis.verdict == "ok"
    second = await prober.run("kz", "fb")  # controls are fresh: shared, not re-probed or re-stored
    assert [(r.measurement.vantage, r.measurement.target) for r in second] == [("kz", "fb")]
    assert len(net.calls) == 4


async def test_blocking_at_the_vantage_only_is_judged_against_its_controls() -> None:
    net = FakeNetwork()
    net.blocked.add(("kz", "fb"))
    prober = Prober(config(), measure_fn=net)
    results = await prober.run("kz", "fb")
    assert (results[0].analysis.verdict, results[0].analysis.failure) == ("dns_blocked", "dns_nxdomain_error")


async def test_concurrent_runs_share_one_control_probe() -> None:
    net = FakeNetwork()
    net.delay = 0.05
    cfg = parse_config(
        {
            "vantages": [{"name": "kz"}],
            "targets": [{"name": f"t{i}", "url": f"https://t{i}.lab/"} for i in range(5)]
            + [{"name": "wiki", "url": "https://wiki.lab/", "control": True}],
        }
    )
    prober = Prober(cfg, measure_fn=net)
    await asyncio.gather(*(prober.run("kz", f"t{i}") for i in range(5)))
    assert sum(1 for _, t, _ in net.calls if t == "wiki") == 1


async def test_verdict_change_triggers_confirmation_reprobes() -> None:
    net = FakeNetwork()
    results: list[Result] = []
    cfg = config(interval=3, confirm_interval=1)
    scheduler = Scheduler(Prober(cfg, measure_fn=net), results.extend)
    pair = ("kz", "fb")
    scheduler.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while scheduler.states.get(pair) is None:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        net.blocked.add(pair)
        blocked_at = loop.time()
        retimed: list[datetime] = []
        while scheduler.states[pair].confirmed != "dns_blocked":
            state = scheduler.states[pair]
            job = scheduler._aps.get_job("probe:kz:fb")
            if state.confirming and job is not None and job.next_run_time is not None:
                retimed.append(job.next_run_time)
            assert loop.time() < blocked_at + 10
            await asyncio.sleep(0.02)
    finally:
        await scheduler.drain(1.0)
    runs = [t for v, target, t in net.calls if (v, target) == pair and t >= blocked_at]
    assert len(runs) >= 2
    # The confirming run was due confirm_interval (1 s) after the change was seen, not at the
    # next base slot; how late it actually ran depends on the machine's load, not on us.
    assert retimed, "the pair's job was never re-timed for the confirmation"
    # Off the 3 s base grid: due for the confirmation only (there are no watch windows).
    assert "base" not in scheduler.agenda.kinds(pair, retimed[0].timestamp())
    assert runs[1] - runs[0] >= 0.8


async def test_drain_waits_for_runs_in_flight_within_the_grace_period() -> None:
    net = FakeNetwork()
    net.delay = 0.3
    results: list[Result] = []
    scheduler = Scheduler(Prober(config(interval=1), measure_fn=net), results.extend)
    scheduler.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while scheduler.in_flight == 0:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    cancelled = await scheduler.drain(grace=2.0)
    assert cancelled == 0
    assert results  # the run in flight completed and was delivered


async def test_a_pair_due_while_its_run_goes_on_is_skipped_in_curfews_own_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = FakeNetwork()
    net.delay = 3.0  # a probe longer than the pair's interval (a throttled download)
    scheduler = Scheduler(Prober(config(interval=1), measure_fn=net), lambda _: None)
    caplog.set_level(logging.INFO)
    scheduler.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    try:
        while "event=skip vantage=kz target=fb reason=already-running" not in caplog.text:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
    finally:
        await scheduler.drain(grace=0.1)
    warned = [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= logging.WARNING]
    assert not warned
    assert len([c for c in net.calls if c[:2] == ("kz", "fb")]) == 1  # never two runs of a pair


async def test_drain_cancels_runs_that_outlive_the_grace_period() -> None:
    net = FakeNetwork()
    net.delay = 30
    scheduler = Scheduler(Prober(config(interval=1), measure_fn=net), lambda _: None)
    scheduler.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while scheduler.in_flight == 0:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    start = loop.time()
    assert await scheduler.drain(grace=0.2) >= 1
    assert loop.time() - start < 2


async def test_apply_adds_and_removes_jobs() -> None:
    net = FakeNetwork()
    scheduler = Scheduler(Prober(config(), measure_fn=net), lambda _: None)
    scheduler.start()
    try:
        assert {job.id for job in scheduler._aps.get_jobs()} == {
            "probe:kz:fb",
            "probe:kz:wiki",
            "probe:ctl:fb",
            "probe:ctl:wiki",
        }
        smaller = parse_config(
            {
                "vantages": [{"name": "kz"}],
                "targets": [{"name": "yt", "url": "https://yt.lab/", "interval": 10}],
            }
        )
        scheduler.apply(smaller)
        jobs = scheduler._aps.get_jobs()
        assert [job.id for job in jobs] == ["probe:kz:yt"]
        assert scheduler.agenda.interval(("kz", "yt")) == 10
    finally:
        await scheduler.drain(0.1)


async def test_start_keeps_the_probers_helper_pool_and_a_reload_replaces_it() -> None:
    # The prober was built from the very config the scheduler starts with: building its helper
    # clients a second time (and closing the first set later) was wasted work at every start.
    prober = Prober(config(), measure_fn=FakeNetwork())
    built = prober.helpers
    scheduler = Scheduler(prober, lambda _: None)
    scheduler.start()
    try:
        assert prober.helpers is built
        scheduler.apply(config(max_concurrency=3))  # a reload: a new config object
        assert prober.helpers is not built and prober.max_concurrency == 3
    finally:
        await scheduler.drain(0.1)
        await prober.aclose()


async def test_watch_windows_probe_densely_around_a_predicted_onset() -> None:
    from datetime import UTC, timedelta

    from probe.episodes.pattern import Schedule

    net = FakeNetwork()
    cfg = config(interval=600, confirm_interval=1)
    scheduler = Scheduler(Prober(cfg, measure_fn=net), lambda _: None)
    scheduler.start()
    try:
        now = datetime.now(UTC)
        onset = (now + timedelta(minutes=5)).replace(second=0, microsecond=0)
        schedule = Schedule(
            "kz",
            "fb",
            onset.time(),
            (onset + timedelta(hours=2)).time(),
            "UTC",
            10,
            14,
            frozenset(range(7)),
            "tls_blocked",
            None,
        )
        # The onset's window (one edge); the offset, 2 h later, is past the horizon's end.
        assert scheduler.plan_watch([schedule], now, horizon=3600) == 1
        assert scheduler.plan_watch([schedule], now, horizon=3600) == 1  # again: the same instants
        due = scheduler._aps.get_job("probe:kz:fb").next_run_time
        assert due <= now + timedelta(seconds=2)  # the window is open: due every second from now
        assert scheduler.agenda.next_due(("kz", "wiki"), now.timestamp()) is not None
        assert scheduler.agenda.kinds(("kz", "wiki"), onset.timestamp()) <= {"base"}  # wiki: no schedule
        loop = asyncio.get_running_loop()
        start = loop.time()
        while sum(1 for v, t, _ in net.calls if (v, t) == ("kz", "fb")) < 3:
            assert loop.time() - start < 6, net.calls
            await asyncio.sleep(0.05)
    finally:
        await scheduler.drain(1.0)


async def test_a_run_cancelled_while_waiting_for_a_borrowed_control_leaves_its_owner_running() -> None:
    async def net(vantage: str, target: str) -> Measurement:
        await asyncio.sleep(0.5 if target == "wiki" else 0.01)
        return fake(vantage, target, blocked=False)

    prober = Prober(config(), measure_fn=net)
    owner = asyncio.ensure_future(prober.run("kz", "wiki"))  # its own probe is kz/fb's control
    await asyncio.sleep(0.01)
    borrower = asyncio.ensure_future(prober.run("kz", "fb"))
    await asyncio.sleep(0.1)  # the borrower's probe is in; it waits for the owner's
    borrower.cancel()  # its deadline, say
    results = await asyncio.wait_for(owner, 5)
    assert (results[0].measurement.vantage, results[0].measurement.target) == ("kz", "wiki")
    assert borrower.cancelled()
