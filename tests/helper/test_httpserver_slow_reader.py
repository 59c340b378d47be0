"""A client that sends a request and never reads the answer must not hold a connection forever."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import httpx
import trustme

from probe.helper.httpserver import Head, HttpServer, Limits, Response

BIG = 32 * 1024 * 1024  # far more than the kernel's socket buffers on both ends hold


class BigAnswer:
    async def on_head(self, head: Head) -> Response | None:
        return None

    async def on_request(self, head: Head, body: bytes) -> Response:
        return Response(200, b"x" * BIG)

    def on_refused(self, client: str, status: int, reason: str) -> None:
        pass


async def test_a_client_that_never_reads_its_answer_is_dropped() -> None:
    server = HttpServer(BigAnswer(), Limits(send_timeout=0.5))
    await server.start("127.0.0.1", 0)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(50):  # bounded: 5 s at most
            await asyncio.sleep(0.1)
            if server.connections == 0:
                break
        assert server.connections == 0
    finally:
        sock.close()
        await server.close()


async def test_connections_still_in_their_tls_handshake_count_against_the_cap(tmp_path: Path) -> None:
    # Before: TLS ran before the connection was counted, so sockets that never finish their
    # handshake piled up uncounted (one descriptor each) for header_timeout.
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(tls)
    server = HttpServer(BigAnswer(), Limits(max_connections=2, header_timeout=30.0), tls)
    await server.start("127.0.0.1", 0)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        for _ in range(50):  # bounded: 5 s at most
            await asyncio.sleep(0.1)
            if server.connections == 2:
                break
        assert server.connections == 2
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # turned away at once
        writer.close()
        # A real client is served once a slot frees up.
        socks.pop().close()
        for _ in range(50):
            await asyncio.sleep(0.1)
            if server.connections < 2:
                break
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        async with httpx.AsyncClient(verify=client_ctx, trust_env=False) as client:
            resp = await client.get(f"https://127.0.0.1:{server.port}/")
        assert resp.status_code == 200 and len(resp.content) == BIG
    finally:
        for s in socks:
            s.close()
        await server.close()
