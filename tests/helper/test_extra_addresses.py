"""engine.measure(extra_addresses=...): the probe's addresses are measured beside the resolved ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trustme

from probe.config import Target, parse_config
from probe.engine import MAX_EXTRA_ADDRESSES, measure
from probe.model import Measurement
from probe.vantage import vantage_network

FIRST, SECOND, DEAD = "127.0.4.11", "127.0.4.12", "127.0.4.13"  # DEAD: nothing listens there


async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        await writer.drain()
    finally:
        writer.close()


@asynccontextmanager
async def two_servers(ssl: object = None) -> AsyncIterator[int]:
    """The same page on FIRST and SECOND, on one port."""
    first = await asyncio.start_server(hello, FIRST, 0, ssl=ssl)  # type: ignore[arg-type]
    port = first.sockets[0].getsockname()[1]
    second = await asyncio.start_server(hello, SECOND, port, ssl=ssl)  # type: ignore[arg-type]
    try:
        yield port
    finally:
        for srv in (first, second):
            srv.close()
            await srv.wait_closed()


async def probe(url: str, extra: tuple[str, ...] = (), ca_bundle: str | None = None) -> Measurement:
    config = parse_config(
        {
            "tls": {"ca_bundle": ca_bundle} if ca_bundle else {},
            "probe": {"timeouts": {"tcp_connect": 1, "tls_handshake": 1, "http_request": 2, "total": 4}},
            "vantages": [{"name": "v"}],
            "targets": [{"name": "t", "url": url}],
        }
    )
    target: Target = config.targets[0]
    return await measure(
        target, vantage_network(config.vantages[0], config), config.probe, extra_addresses=extra
    )


async def test_without_extra_addresses_only_the_resolved_one_is_measured() -> None:
    async with two_servers() as port:
        m = await probe(f"http://{FIRST}:{port}/")
    assert [o.address for o in m.tcp] == [FIRST]
    assert m.http is not None and m.http.status == 200


async def test_extra_addresses_are_connected_to_and_the_fetch_uses_the_resolved_one() -> None:
    async with two_servers() as port:
        m = await probe(f"http://{FIRST}:{port}/", extra=(SECOND, FIRST, "not-an-ip", DEAD, SECOND))
    assert [(o.address, o.port) for o in m.tcp] == [(FIRST, port), (SECOND, port), (DEAD, port)]
    assert [o.failure for o in m.tcp] == [None, None, "connection_refused"]
    assert m.http is not None and m.http.address == FIRST and m.http.status == 200


async def test_extra_addresses_get_a_tls_handshake_with_the_urls_name(tmp_path: object) -> None:
    import ssl
    from pathlib import Path

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(FIRST).configure_cert(ctx)  # both servers present the certificate for FIRST
    bundle = Path(str(tmp_path)) / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    async with two_servers(ctx) as port:
        m = await probe(f"https://{FIRST}:{port}/", extra=(SECOND,), ca_bundle=str(bundle))
    by_address = {o.address: o for o in m.tls}
    assert set(by_address) == {FIRST, SECOND}
    assert by_address[FIRST].valid is True
    assert by_address[SECOND].server_name == FIRST
    assert by_address[SECOND].valid is True  # the name checked is the URL host on every address


async def test_extra_addresses_are_bounded() -> None:
    many = tuple(f"127.0.5.{i}" for i in range(1, 40))
    async with two_servers() as port:
        m = await probe(f"http://{FIRST}:{port}/", extra=many)
    assert len(m.tcp) == 1 + MAX_EXTRA_ADDRESSES
    assert [o.address for o in m.tcp][1:] == list(many[:MAX_EXTRA_ADDRESSES])
