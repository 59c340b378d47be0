"""Hostile and dead servers end in a recorded failure within the probe's deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trustme

from probe.config import parse_config
from probe.engine import measure
from probe.model import Measurement
from probe.vantage import vantage_network

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TOTAL = 3.0
SLACK = 5.0
"""Seconds past the probe's deadline that a loaded machine may take to wind it down. Still far
below what the hostile servers hold out for (50-60 s, or forever): a deadline not kept fails."""
ADDRESS = "127.0.4.1"


@asynccontextmanager
async def server(handler: Handler, tls: trustme.CA | None = None) -> AsyncIterator[int]:
    ssl_context = None
    if tls is not None:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.issue_cert(ADDRESS).configure_cert(ssl_context)
    tasks: set[asyncio.Task[None]] = set()

    async def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(track, ADDRESS, 0, ssl=ssl_context)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


async def probe(url: str, tmp_path: Path, ca: trustme.CA | None = None) -> Measurement:
    tls = {}
    if ca is not None:
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        tls = {"ca_bundle": str(tmp_path / "ca.pem")}
    config = parse_config(
        {
            "tls": tls,
            "probe": {"timeouts": {"tcp_connect": 1, "tls_handshake": 1, "http_request": 10, "total": TOTAL}},
            "vantages": [{"name": "v", "source_address": "127.0.0.2"}],
            "targets": [{"name": "t", "url": url}],
        }
    )
    return await measure(config.targets[0], vantage_network(config.vantages[0], config), config.probe)


async def trickle_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    for _ in range(1000):
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def headers_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for i in range(100000):
        writer.write(b"X-Junk-%d: %s\r\n" % (i, b"a" * 100))
        await writer.drain()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"\x00\xff this is not HTTP \r\n\r\n")
    await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(60)


@pytest.mark.parametrize(
    ("handler", "failure"),
    [
        (
            trickle_forever,
            None,
        ),  # the body is read until the deadline: a slow page, not a failure of the request line
        (headers_forever, "http_request_failed"),
        (garbage, "http_request_failed"),
        (never_answer, "generic_timeout_error"),
    ],
)
async def test_hostile_http_server(tmp_path: Path, handler: Handler, failure: str | None) -> None:
    async with server(handler) as port:
        start = time.monotonic()
        m = await probe(f"http://{ADDRESS}:{port}/", tmp_path)
        elapsed = time.monotonic() - start
    assert elapsed < TOTAL + SLACK
    assert m.http is not None
    if handler is trickle_forever:
        assert m.http.failure == "generic_timeout_error"
        assert m.http.status == 200
    else:
        assert m.http.failure == failure


async def test_tls_server_that_never_finishes_the_handshake(tmp_path: Path) -> None:
    async with server(never_answer) as port:
        start = time.monotonic()
        m = await probe(f"https://{ADDRESS}:{port}/", tmp_path)
    assert time.monotonic() - start < TOTAL + SLACK
    assert m.tls[0].failure == "generic_timeout_error"


async def test_plain_http_on_a_tls_port_is_a_failed_handshake(tmp_path: Path) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with server(plain) as port:
        m = await probe(f"https://{ADDRESS}:{port}/", tmp_path)
    assert m.tls[0].failure == "ssl_failed_handshake"


async def test_dead_address_is_connection_refused(tmp_path: Path) -> None:
    m = await probe("https://127.0.4.2:9/", tmp_path)
    assert m.tcp[0].failure == "connection_refused"
    assert m.tls == () and m.http is None


async def test_valid_tls_server_is_recorded_in_full(tmp_path: Path) -> None:
    ca = trustme.CA()

    async def page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<title>ok</title>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with server(page, tls=ca) as port:
        m = await probe(f"https://{ADDRESS}:{port}/", tmp_path, ca)
    tls = m.tls[0]
    assert tls.failure is None and tls.valid is True
    assert tls.version in ("TLSv1.2", "TLSv1.3")
    assert tls.cipher
    assert tls.peer_chain and tls.peer_chain[0].issuer.startswith("O=trustme")
    assert m.http is not None and m.http.title == "ok"
    assert m.tcp[0].t <= tls.t0 + 1e-6 and tls.t <= m.http.t0 + 1e-6
