"""`TlsStream.recv` hands over every whole record a socket read brought, at once; what ends the
stream after them (close_notify, a corrupt record) comes with the next call, as before."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from probe.lab.ca import LabCA
from probe.layers.stream import TlsStream

HOST = "www.site.test"
RECORD = 16384  # one write of this size is one full TLS record
BAD_RECORD = b"\x17\x03\x03\x00\x20" + bytes(range(32))  # application data that cannot decrypt


class Server:
    """The server's end, driven by hand through memory BIOs over a blocking socket."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=True)

    def _flush(self) -> None:
        self.sock.sendall(self._out.read())

    def accept(self) -> None:
        """The handshake, then the client's first byte (its Finished comes with it)."""
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                self.obj.read(1)
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._in.write(self.sock.recv(65536))

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def close_notify(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):  # the client's is not waited for
            self.obj.unwrap()
        self._flush()


async def stream_after(tmp_path: Path, serve: Callable[[Server], None]) -> TlsStream:
    """A client stream whose server ran `serve` and is done: all it sent is in the socket."""
    ca = LabCA(tmp_path)
    client, server = socket.socketpair()
    done = threading.Event()

    def server_side() -> None:
        with server:
            peer = Server(server, ca.server_context("site", (HOST,)))
            peer.accept()
            serve(peer)
            done.set()

    thread = threading.Thread(target=server_side, daemon=True)
    thread.start()
    client.setblocking(False)
    stream = TlsStream(client, ca.client_context(), HOST)
    await asyncio.wait_for(stream.handshake(), 10)
    await stream.send(b"x")
    assert await asyncio.get_running_loop().run_in_executor(None, done.wait, 10)
    thread.join(10)
    return stream


async def test_the_records_of_one_read_come_at_once_then_the_close(tmp_path: Path) -> None:
    def serve(server: Server) -> None:
        for i in range(3):
            server.send(bytes([i]) * RECORD)
        server.close_notify()

    stream = await stream_after(tmp_path, serve)
    try:
        data = await asyncio.wait_for(stream.recv(), 10)
        assert data == b"".join(bytes([i]) * RECORD for i in range(3))
        assert await asyncio.wait_for(stream.recv(), 10) == b""
        assert await asyncio.wait_for(stream.recv(), 10) == b""
    finally:
        stream.close()


async def test_a_corrupt_record_after_good_ones_fails_the_next_read(tmp_path: Path) -> None:
    def serve(server: Server) -> None:
        server.send(b"a" * RECORD)
        server.send(b"b" * RECORD)
        server.sock.sendall(BAD_RECORD)  # under TLS, straight onto the wire

    stream = await stream_after(tmp_path, serve)
    try:
        assert await asyncio.wait_for(stream.recv(), 10) == b"a" * RECORD + b"b" * RECORD
        try:
            await asyncio.wait_for(stream.recv(), 10)
        except ssl.SSLError as exc:
            assert not isinstance(exc, ssl.SSLWantReadError)
        else:
            raise AssertionError("the corrupt record was not reported")
    finally:
        stream.close()
