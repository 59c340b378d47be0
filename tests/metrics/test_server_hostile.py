"""The metrics port against hostile local clients: it stays up, its limits hold, real scrapes get
through, and every descriptor it took is given back (issue 12: it once ran the daemon out)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator

import pytest
from prometheus_client import CollectorRegistry

from probe.metrics import Metrics, MetricsServer, admission, serve_metrics
from probe.metrics.admission import Limits, Slot, choose_victim, free_descriptors
from tests.metrics.test_server import exchange, fetch

CAP = 8


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(CollectorRegistry())
    # ~2,000 pairs: a body of a few MB, so a client that does not read fills every buffer.
    m.set_pairs([(f"v{i}", f"t{j}") for i in range(40) for j in range(50)])
    return m


@pytest.fixture
async def server(metrics: Metrics) -> AsyncIterator[MetricsServer]:
    limits = Limits(max_connections=CAP, head_timeout=0.5, write_timeout=0.5, response_timeout=5.0)
    srv = await serve_metrics(metrics, "127.0.0.1", 0, limits)
    try:
        yield srv
    finally:
        await srv.close()


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class Peak:
    """The most connections the server held while sampled (every 10 ms, until stopped)."""

    def __init__(self, server: MetricsServer) -> None:
        self.value = 0
        self._task = asyncio.ensure_future(self._sample(server))

    async def _sample(self, server: MetricsServer) -> None:
        while True:
            self.value = max(self.value, server.connections)
            await asyncio.sleep(0.01)

    async def stop(self) -> int:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.value


def raw_client(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer, so a response that is not read stalls soon."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


async def test_idle_connections_beyond_the_cap_evict_the_oldest_and_scrapes_still_work(
    server: MetricsServer,
) -> None:
    baseline = open_descriptors()
    peak = Peak(server)
    hostile = [raw_client(server.port) for _ in range(5 * CAP)]
    try:
        await until(lambda: server.connections > 0, 5, "the first connections")
        await asyncio.sleep(0.3)  # let the server take whatever it will
        status, _, body = await asyncio.wait_for(fetch(server, "/metrics"), 5)
        assert status == 200 and b"curfew_probe_runs_total" in body
    finally:
        for sock in hostile:
            sock.close()
    assert await peak.stop() <= CAP
    await until(lambda: server.connections == 0, 5, "the server to let go")
    await until(lambda: open_descriptors() <= baseline, 5, "descriptors back to the baseline")


async def test_pipelining_without_reading_is_dropped_after_the_write_timeout(server: MetricsServer) -> None:
    baseline = open_descriptors()
    pipelined = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    peak = Peak(server)
    hostile = [raw_client(server.port) for _ in range(3 * CAP)]
    try:
        for sock in hostile:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(pipelined)  # as much as the kernel takes; never read a byte
        await until(lambda: server.connections > 0, 5, "the non-readers to be served")
        # Past the write timeout the server gives up on them, though they are still connected.
        await until(lambda: server.connections == 0, 10, "the non-readers to be dropped")
        status, _, _ = await asyncio.wait_for(fetch(server, "/healthz"), 5)
        assert status == 200
    finally:
        for sock in hostile:
            sock.close()
    assert await peak.stop() <= CAP
    await until(lambda: open_descriptors() <= baseline, 5, "descriptors back to the baseline")


async def test_a_scrape_waits_for_busy_slots_rather_than_being_refused(server: MetricsServer) -> None:
    hostile = [raw_client(server.port) for _ in range(CAP)]
    try:
        for sock in hostile:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(lambda: server.connections > 0, 5, "the non-readers to be served")
        peak = Peak(server)
        status, _, body = await asyncio.wait_for(fetch(server, "/metrics"), 10)
        # Served once a non-reader timed out (0.5 s), not turned away; the cap held meanwhile.
        assert status == 200 and b"curfew_probe_runs_total" in body
        assert await peak.stop() <= CAP
    finally:
        for sock in hostile:
            sock.close()


async def test_slowloris_is_cut_off_after_the_head_timeout(server: MetricsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with contextlib.suppress(ConnectionError):
            for byte in b"GET /metrics HTTP/1.1\r\nHost: slow\r\n":  # never finishes the head
                writer.write(bytes([byte]))
                await writer.drain()
                if reader.at_eof():
                    break
                await asyncio.sleep(0.1)
        try:
            rest = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            rest = b""  # the server aborts a connection it gives up on: a reset is a close too
        assert rest == b""  # closed by the server, no response
        assert loop.time() - started < 3.0
    finally:
        writer.close()


async def test_an_oversized_head_gets_400(server: MetricsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_a_connection_serves_at_most_max_requests(metrics: Metrics) -> None:
    srv = await serve_metrics(metrics, "127.0.0.1", 0, Limits(max_requests=3))
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        heads = [(await exchange(reader, writer, "GET", "/healthz"))[1] for _ in range(3)]
        assert [h["connection"] for h in heads] == ["keep-alive", "keep-alive", "close"]
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
        await srv.close()


async def test_no_connection_is_accepted_below_the_descriptor_reserve(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    free = free_descriptors()
    assert free is not None
    srv = await serve_metrics(metrics, "127.0.0.1", 0, Limits(reserve=free + 1000))
    try:
        caplog.set_level(logging.WARNING, logger="probe.metrics.server")
        with pytest.raises(TimeoutError):  # connected in the backlog, never answered
            await asyncio.wait_for(fetch(srv, "/healthz"), 1.5)
        assert srv.connections == 0
        assert any("event=metrics-connection-limited reason=paused" in r.getMessage() for r in caplog.records)
    finally:
        await srv.close()


@pytest.mark.parametrize(("soft", "reserve"), [(256, 64), (1024, 256), (4096, 1024), (65536, 1024)])
def test_the_default_reserve_is_a_quarter_of_the_limit_within_bounds(
    soft: int, reserve: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission, "soft_nofile", lambda: soft)
    assert Limits().reserved() == reserve
    assert Limits(reserve=10).reserved() == 10


async def test_a_client_that_does_not_read_gives_way_to_a_scraper_before_the_write_timeout(
    metrics: Metrics,
) -> None:
    limits = Limits(max_connections=4, write_timeout=30.0)
    srv = await serve_metrics(metrics, "127.0.0.1", 0, limits)
    hostile = [raw_client(srv.port) for _ in range(4)]
    try:
        for sock in hostile:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await until(lambda: srv.connections == 4, 5, "every slot taken by a non-reader")
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _, body = await asyncio.wait_for(fetch(srv, "/metrics"), 10)
        assert status == 200 and b"curfew_probe_runs_total" in body
        # One stalled non-reader was dropped for it (STALL_EVICT, 1 s), long before 30 s.
        assert loop.time() - started < 10
        assert srv.connections <= 4
    finally:
        for sock in hostile:
            sock.close()
        await srv.close()


class CountingMetrics(Metrics):
    """Metrics whose rendering takes a while and counts how many renders run at once."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def render_chunks(self, accept: str = "") -> tuple[Generator[bytes, None, None], str]:
        chunks, ctype = super().render_chunks(accept)

        def slow() -> Generator[bytes, None, None]:
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                time.sleep(0.05)
                yield from chunks
            finally:
                with self.lock:
                    self.active -= 1

        return slow(), ctype


async def test_many_scrapes_at_once_render_one_at_a_time() -> None:
    metrics = CountingMetrics()
    srv = await serve_metrics(metrics, "127.0.0.1", 0)
    try:
        responses = await asyncio.wait_for(asyncio.gather(*(fetch(srv, "/metrics") for _ in range(8))), 20)
    finally:
        await srv.close()
    assert [r[0] for r in responses] == [200] * 8
    assert metrics.peak == 1


def test_free_descriptors_is_zero_when_even_the_count_cannot_be_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    def out_of_descriptors(path: str) -> list[str]:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(admission, "soft_nofile", lambda: 1024)
    monkeypatch.setattr(admission.os, "listdir", out_of_descriptors)
    assert free_descriptors() == 0


IDLE_5, IDLE_8 = Slot(idle_since=5.0), Slot(idle_since=8.0)
STALLED_2, STALLED_9 = Slot(stalled_since=2.0), Slot(stalled_since=9.0)
BUSY = Slot()  # sending to a client that keeps up


@pytest.mark.parametrize(
    ("slots", "victim"),
    [
        pytest.param([BUSY, IDLE_8, IDLE_5, STALLED_2], IDLE_5, id="the-longest-idle-first"),
        pytest.param([BUSY, STALLED_9, STALLED_2], STALLED_2, id="else-the-longest-stalled"),
        pytest.param([BUSY, STALLED_9], None, id="a-stall-under-a-second-is-a-scraper-reading"),
        pytest.param([BUSY, BUSY], None, id="all-busy-the-newcomer-waits"),
        pytest.param([], None, id="empty"),
    ],
)
def test_which_connection_gives_way(slots: list[Slot], victim: Slot | None) -> None:
    assert choose_victim(slots, now=9.5) is victim
