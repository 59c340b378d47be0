"""Byte streams over a connected non-blocking socket: plain, or TLS through memory BIOs.

Driving `ssl.SSLObject` by hand over `loop.sock_recv`/`sock_sendall` keeps the hot path
small (no transport/protocol layers) and lets the TLS layer tell an EOF from a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

RECV_SIZE = 65536


class Stream(Protocol):
    # Called with the number of raw bytes each socket read returned (ciphertext for TLS), so
    # the throughput check samples what crossed the network, not whole decrypted records.
    on_receive: Callable[[int], None] | None

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes:
        """Next bytes, or b"" at end of stream."""
        ...

    def close(self) -> None: ...


class PlainStream:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self.on_receive: Callable[[int], None] | None = None

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        data = await self._loop.sock_recv(self.sock, RECV_SIZE)
        if self.on_receive is not None:
            self.on_receive(len(data))
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class TlsStream:
    """A TLS client session over `sock`. Call `handshake()` first."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_name: str) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)
        self.on_receive: Callable[[int], None] | None = None
        self._finish_unsent = False
        self._error: ssl.SSLError | None = None

    async def _flush(self) -> None:
        self._finish_unsent = False
        pending = self._outgoing.read()
        if pending:
            await self._loop.sock_sendall(self.sock, pending)

    async def _fill(self) -> None:
        data = await self._loop.sock_recv(self.sock, RECV_SIZE)
        if self.on_receive is not None:
            self.on_receive(len(data))
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def handshake(self) -> None:
        """Complete the handshake; raises EOFError if the peer closed mid-handshake."""
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if self._incoming.eof:
                    raise EOFError("connection closed during the TLS handshake") from None
                await self._fill()
            except ssl.SSLEOFError:
                raise EOFError("connection closed during the TLS handshake") from None
        # The client's last handshake flight (its Finished, in TLS 1.3) stays buffered and
        # goes out with the request: one send instead of two. `close` sends it otherwise.
        self._finish_unsent = True

    async def send(self, data: bytes) -> None:
        self.obj.write(data)
        await self._flush()

    async def recv(self) -> bytes:
        """The plaintext of every whole record received so far (at least one), or b"" at the
        end of the stream. A socket read of 64 KB holds four full records: decrypted in one
        go, the HTTP parser runs once per read instead of once per record."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        while True:
            try:
                data = self.obj.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()
                if self._incoming.eof:
                    return b""
                await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            return self._more(data) if self._incoming.pending else data

    def _more(self, first: bytes) -> bytes:
        """`first` and the records after it already in the incoming buffer. What ends the
        stream after them (close_notify, a bad record) is for the next `recv` to report."""
        parts = [first]
        while self._incoming.pending:
            try:
                parts.append(self.obj.read(RECV_SIZE))
            except ssl.SSLWantReadError:
                break  # a record's first part: the rest comes with the next socket read
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break  # the next read meets it again
            except ssl.SSLError as exc:
                self._error = exc
                break
        return b"".join(parts)

    def close(self) -> None:
        if self._finish_unsent:  # only a completed handshake's flight, never a failure's alert
            with contextlib.suppress(OSError):
                self.sock.send(self._outgoing.read())  # a few bytes on an idle socket: never blocks
        with contextlib.suppress(OSError):
            self.sock.close()
