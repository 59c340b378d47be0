"""The benchmark's origin: one HTTPS page and one DNS name, in a process of their own.

Run by bench/probe_cpu.py as ``python bench/lab_https.py DIR HOST PORT DNS_PORT``: it
serves a fixed ~3 KB HTML page over HTTP/1.1 + TLS on HOST:PORT with the certificate in
DIR/server.pem (key DIR/server.key), answers A queries for the name in DIR/name on
127.0.0.1:DNS_PORT with HOST (AAAA: NOERROR, no answer; other names: NXDOMAIN), prints
``ready`` and runs until killed. Kept apart from probe.lab so the benchmark measures the
same thing while the lab evolves (probe.lab.ca issues no IP SANs, probe.lab.origin binds
127.0.0.1:ephemeral only).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import uvloop

_PAGE = (
    b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>curfew bench</title></head>\n<body>\n'
    + b"".join(
        b"<p>Story %d: the bench keeps this text stable so every probe reads the same bytes.</p>\n" % i
        for i in range(1, 36)
    )
    + b"</body></html>\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: curfew-bench\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_PAGE)
) + _PAGE


class _Http(asyncio.Protocol):
    """Answer the first request head with the page, then close (TLS close_notify included)."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's own transport classes

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" in self.buf and self.transport is not None:
            self.transport.write(RESPONSE)
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class _Dns(asyncio.DatagramProtocol):
    def __init__(self, name: str, address: str) -> None:
        self.name = name.lower().rstrip(".")
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        if not query.question or self.transport is None:
            return
        question = query.question[0]
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if question.name.to_text(omit_final_dot=True).lower() != self.name:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", self.address))
        self.transport.sendto(response.to_wire(), addr)


async def serve(directory: Path, host: str, port: int, dns_port: int) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    context.set_alpn_protocols(["http/1.1"])
    # OpenSSL's defaults (two TLS 1.3 session tickets per handshake), like a real server;
    # neither prober keeps sessions, so every handshake is a full one.
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, host, port, ssl=context, backlog=4096, reuse_address=True)
    name = (directory / "name").read_text().strip()
    await loop.create_datagram_endpoint(lambda: _Dns(name, host), local_addr=("127.0.0.1", dns_port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    directory, host, port, dns_port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    uvloop.run(serve(directory, host, port, dns_port))
