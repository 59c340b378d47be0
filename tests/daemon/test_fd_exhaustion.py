"""Fault injection: `curfew run` short of file descriptors, as issue 12 found it.

The daemon runs as a subprocess with a low RLIMIT_NOFILE against a lab with no censorship at
all, so any blocked or down verdict, and any episode, is false. First local clients flood
/metrics with pipelined requests they never read (which once ran the daemon out of descriptors
in 20 s and stored 126 false verdicts): the daemon must keep its descriptors and still answer
scrapes. Then its limit is squeezed to what it already holds, so its probes really do hit
EMFILE: those must be counted and logged as its own failures, never stored or judged. Finally it
must answer and stop cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import resource
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from tests.daemon.harness import CURFEW, Daemon, daemon_config, metric, query
from tests.integration.conftest import scenario

LOW = 256
"""The daemon's soft descriptor limit: a quarter of systemd's default, so the flood below is
several times what it could hold without the metrics server's limits."""
FLOOD = 300
"""Hostile connections to /metrics, each pipelining requests it never reads."""
PIPELINED = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n" * 100

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(resource, "prlimit"),
    reason="needs Linux: /proc/PID/fd and prlimit",
)


class LimitedDaemon(Daemon):
    """`curfew run` started with a soft RLIMIT_NOFILE of `soft`. The hard limit is kept, so the
    test can lower and raise the soft one again with prlimit, as a user may for their own process."""

    soft: int = LOW

    async def start(self) -> None:
        self.write()
        soft = self.soft

        def limit() -> None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        self.proc = await asyncio.create_subprocess_exec(
            *CURFEW,
            "run",
            "--config",
            str(self.config_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=limit,
        )
        self._reader = asyncio.ensure_future(self._read())
        await self.wait_for(lambda: any("event=ready" in line for line in self.lines), 30, "ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def set_soft_limit(self, soft: int) -> None:
        _, hard = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (soft, hard))

    def count(self, event: str) -> int:
        return sum(1 for line in self.lines if f"event={event} " in line)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    data = scenario([])  # no rules: nothing is censored, nothing is down
    for target in data["targets"]:
        target["bulk"] = False
    async with Lab(parse_scenario(data), tmp_path / "lab") as running:
        yield running


@pytest.fixture
async def daemon(lab: Lab, tmp_path: Path, database_url: str) -> AsyncIterator[LimitedDaemon]:
    d = LimitedDaemon(tmp_path / "curfew.yaml", daemon_config(lab, tmp_path, database_url, interval=2))
    try:
        yield d
    finally:
        await d.kill()


class Flood:
    """Local clients that connect to the metrics port, pipeline requests and never read."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []

    def open(self, n: int) -> None:
        for _ in range(n):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", self.port))  # in progress, or waiting in the backlog
            self.sockets.append(sock)

    def push(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):  # not connected yet, buffers full, or dropped
                sock.send(PIPELINED)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


async def scrape(port: int, timeout: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics as a scraper would, with a scrape timeout as long as `timeout`."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def until(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon) -> None:
    await daemon.wait_for(check, timeout, what)


async def test_descriptor_exhaustion_is_never_recorded_as_censorship(
    daemon: LimitedDaemon, database_url: str
) -> None:
    await daemon.start()
    port = int(daemon.config["metrics"]["listen"].rpartition(":")[2])
    await until(lambda: daemon.count("measurement") >= 4, 30, "the first measurements", daemon)

    # 1. The flood: the daemon keeps its descriptors, and a scraper still gets through.
    phases = {"flood": dt.datetime.now(dt.UTC)}
    flood = Flood(port)
    loop = asyncio.get_running_loop()
    peak = 0
    try:
        end = loop.time() + 8
        while loop.time() < end:
            flood.open(FLOOD // 8)
            flood.push()
            peak = max(peak, daemon.descriptors())
            await asyncio.sleep(1)
        # A fresh connection while all 300 are still open: it waits its turn behind them (the
        # kernel's backlog is full, so its SYN is retried), the daemon cycling through them.
        samples = await scrape(port, timeout=45)
        assert metric(samples, "curfew_probe_local_failures_total", reason="emfile") == 0
        assert daemon.count("local-failure") == 0  # the flood alone left the probes enough
    finally:
        flood.close()
    assert peak < LOW

    # 2. The machine really is short: the probes fail here, and say so.
    phases["squeeze"] = dt.datetime.now(dt.UTC)
    before = daemon.count("measurement")
    # A new descriptor takes the lowest free number, and fails with EMFILE if that is not below
    # the limit: with the limit under every number already in use, every socket fails.
    daemon.set_soft_limit(8)
    try:
        await until(lambda: daemon.count("local-failure") >= 3, 30, "probes failing locally", daemon)
    finally:
        daemon.set_soft_limit(LOW)
    line = next(line for line in daemon.lines if "event=local-failure " in line)
    assert "reason=emfile" in line and "stored=no" in line

    # 3. It recovers, answers, counts what happened, and stops cleanly.
    phases["restored"] = dt.datetime.now(dt.UTC)
    resumed = daemon.count("measurement")
    await until(lambda: daemon.count("measurement") >= resumed + 4, 30, "probing to resume", daemon)
    samples = await scrape(port, timeout=30)
    local = metric(samples, "curfew_probe_local_failures_total", reason="emfile")
    assert local is not None and local >= 3
    code = await daemon.stop(signal.SIGTERM, timeout=60)
    assert code == 0, "\n".join(line for line in daemon.lines if "event=measurement " not in line)
    assert any("event=stopped " in line for line in daemon.lines)
    assert before > 0

    # What a user would look at: nothing blocked or down, nothing from the machine's own trouble,
    # no episode.
    rows = await query(
        database_url, "SELECT verdict, failure, CAST(observations AS TEXT), started_at FROM measurements"
    )
    assert rows, "measurements were stored"
    own = [r for r in rows if "open files" in f"{r[1]} {r[2]}" or "local_failure" in f"{r[1]} {r[2]}"]
    assert own == []
    false = [(r[0], r[1], r[3]) for r in rows if r[0].endswith(("_blocked", "_down")) or r[0] == "tls_mitm"]
    assert false == [], phases
    assert await query(database_url, "SELECT * FROM blackouts") == []
    assert not any("Traceback" in line for line in daemon.lines), "\n".join(daemon.lines[-40:])
