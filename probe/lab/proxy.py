"""A SOCKS5 and HTTP CONNECT proxy for the lab: a vantage reached through a proxy.

The proxy makes its outgoing connections from a vantage's source address and resolves
names with the lab's DNS from that address, so a curfew vantage configured with
``proxy: socks5://...`` sees the network exactly as that lab vantage does (DNS at the proxy,
as with a real remote vantage behind ``ssh -D``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import dns.asyncquery
import dns.message
import dns.rdatatype

from probe.lab.service import LabService
from probe.lab.splice import splice

_SOCKS_OK, _SOCKS_FAIL, _SOCKS_UNREACHABLE, _SOCKS_REFUSED = 0, 1, 4, 5


class LabProxy(LabService):
    """Serves SOCKS5 and HTTP CONNECT on one port (told apart by the first byte)."""

    def __init__(self, listen: str, source_address: str, dns_server: tuple[str, int]) -> None:
        super().__init__(listen)
        self.listen = listen
        self.source_address = source_address
        self.dns_server = dns_server

    def url(self, scheme: str = "socks5") -> str:
        return f"{scheme}://{self.listen}:{self.port}"

    async def _resolve(self, host: str) -> str | None:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        query = dns.message.make_query(host, dns.rdatatype.A)
        try:
            reply = await dns.asyncquery.udp(
                query, self.dns_server[0], timeout=2.0, port=self.dns_server[1], source=self.source_address
            )
        except Exception:
            return None
        for rrset in reply.answer:
            for rdata in rrset:
                if rrset.rdtype == dns.rdatatype.A:
                    return str(rdata.address)
        return None

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | int:
        address = await self._resolve(host)
        if address is None:
            return _SOCKS_UNREACHABLE
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(address, port, local_addr=(self.source_address, 0)), 5.0
            )
        except ConnectionRefusedError:
            return _SOCKS_REFUSED
        except (OSError, TimeoutError):
            return _SOCKS_UNREACHABLE

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(1)
        if first == b"\x05":
            await self._socks5(reader, writer)
        else:
            await self._connect(first, reader, writer)

    async def _socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (count,) = await reader.readexactly(1)
        await reader.readexactly(count)
        writer.write(b"\x05\x00")  # no authentication
        version, command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode("ascii")
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            raise ValueError("bad address type")
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        if version != 5 or command != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))
            return
        upstream = await self._open(host, port)
        if isinstance(upstream, int):
            writer.write(b"\x05" + bytes([upstream]) + b"\x00\x01" + bytes(6))
            await writer.drain()
            return
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await writer.drain()
        await splice((reader, writer), upstream)

    async def _connect(
        self, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = first + await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        upstream = await self._open(host.strip("[]"), int(port))
        if isinstance(upstream, int):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await splice((reader, writer), upstream)
