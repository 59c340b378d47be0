"""A client that sends a request and never reads the answer must not hold a connection forever."""

from __future__ import annotations

import asyncio
import socket

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
