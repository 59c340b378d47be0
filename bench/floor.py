"""The floor under curfew's probe: the least a Python client can do for the same probe.

    .venv/bin/python bench/floor.py CA_PEM HOST PORT [N]

One fresh TCP connection, a full validating TLS handshake (ssl.SSLObject over memory
BIOs, the same SSLContext settings as probe.vantage) and one GET whose response is read
to the end, on uvloop, with no observation records, h11 or deadlines. Prints CPU-ms per
probe (user+sys, one process, sequential). bench/probe_cpu.py runs it against its origin.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys

import uvloop


async def probe(context: ssl.SSLContext, host: str, port: int, request: bytes) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await loop.sock_connect(sock, (host, port))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_hostname=host)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await loop.sock_sendall(sock, outgoing.read())
                incoming.write(await loop.sock_recv(sock, 65536))
        obj.getpeercert(binary_form=True)
        obj.write(request)
        await loop.sock_sendall(sock, outgoing.read())
        got = 0
        while True:
            try:
                data = obj.read(65536)
                if not data:
                    return got
                got += len(data)
            except ssl.SSLWantReadError:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    return got
                incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return got
    finally:
        sock.close()


async def main(ca: str, host: str, port: int, n: int) -> float:
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    for _ in range(max(20, n // 20)):
        await probe(context, host, port, request)
    t0 = os.times()
    for _ in range(n):
        if not await probe(context, host, port, request):
            raise SystemExit("empty response")
    t1 = os.times()
    return 1000 * ((t1.user - t0.user) + (t1.system - t0.system)) / n


if __name__ == "__main__":
    ca, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1500
    print(f"{uvloop.run(main(ca, host, port, n)):.3f}")
