"""A small asyncio HTTP/1.1 server for Prometheus: GET /metrics, GET / and GET /healthz.

Rendering runs in a worker thread so a large scrape does not stall the probes on the event
loop, and is streamed: the exposition is pulled from `Metrics.render_chunks` about
`SEND_BATCH` bytes at a time, gzipped incrementally when the scraper accepts it (Prometheus
does), and sent with chunked transfer encoding, so neither the body nor its compressed form is
ever held whole. A body that fits in one batch is sent with a Content-Length instead.
Connections are kept alive between scrapes, as Prometheus does; an idle connection is closed
after `IDLE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Iterator
from typing import Final

from probe.metrics.collector import Metrics

log = logging.getLogger(__name__)

IDLE_TIMEOUT: Final = 60.0
MAX_HEAD: Final = 16 * 1024
GZIP_MIN: Final = 4096  # below this, compressing costs more than it saves
SEND_BATCH: Final = 1 << 20
"""About how many bytes of exposition text are rendered (and compressed) per trip to the thread."""

INDEX: Final = (
    b"<!DOCTYPE html>\n<html><head><title>curfew</title></head><body>\n"
    b'<h1>curfew</h1>\n<p>Internet-censorship measurements: <a href="/metrics">metrics</a>, '
    b'<a href="/healthz">health</a>.</p>\n</body></html>\n'
)
REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


class MetricsServer:
    """A running metrics endpoint; `port` is the bound port (useful when asked for port 0)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.host = ""
        self.port = 0

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._on_connect, host, port, limit=MAX_HEAD)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening and drop open connections (an in-flight scrape is abandoned)."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # the handler then sees the connection gone and returns
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        await self._server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        self._writers.add(writer)
        try:
            await _serve_connection(self._metrics, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the scraper went away, idled out, or we are closing
        finally:
            if task is not None:
                self._connections.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def serve_metrics(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Listen on host:port (port 0 picks a free one) and serve `metrics` until `close()`."""
    server = MetricsServer(metrics)
    await server._start(host, port)
    return server


async def _serve_connection(
    metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.LimitOverrunError:
            await _respond(writer, 400, b"request head too large\n", keep_alive=False)
            return
        request = _parse(head)
        if request is None:
            await _respond(writer, 400, b"bad request\n", keep_alive=False)
            return
        method, path, version, headers = request
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            await _respond(writer, 400, b"a request body is not expected\n", keep_alive=False)
            return
        path = path.split("?", 1)[0]
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, b"only GET\n", keep_alive=keep_alive, extra=(("Allow", "GET, HEAD"),))
        elif path == "/metrics":
            gz = "gzip" in headers.get("accept-encoding", "")
            chunks, ctype = metrics.render_chunks(headers.get("accept", ""))
            try:
                await _stream(writer, _Body(chunks, gz), ctype, version, keep_alive, head_only)
            finally:
                with contextlib.suppress(ValueError):  # still running in its thread: left to GC
                    chunks.close()
        elif path == "/":
            await _respond(
                writer, 200, INDEX, "text/html; charset=utf-8", keep_alive=keep_alive, head_only=head_only
            )
        elif path == "/healthz":
            await _respond(writer, 200, b"ok\n", keep_alive=keep_alive, head_only=head_only)
        else:
            await _respond(writer, 404, b"not found\n", keep_alive=keep_alive, head_only=head_only)
        if not keep_alive:
            return


class _Body:
    """The exposition pulled in batches of about `SEND_BATCH` bytes, gzipped if asked.

    `read_raw` and `read` run in a worker thread (rendering is CPU work), one at a time.
    """

    def __init__(self, chunks: Iterator[bytes], gzip: bool) -> None:
        self._chunks = chunks
        # Level 1: at 10,000 pairs the text is ~90 MB and compresses ~20x even so (docs/benchmarks.md).
        self._z = zlib.compressobj(1, zlib.DEFLATED, 31) if gzip else None  # wbits 31: a gzip stream
        self.done = False

    @property
    def gzip(self) -> bool:
        return self._z is not None

    def read_raw(self) -> bytes:
        """The next batch of text, uncompressed; sets `done` when the exposition is exhausted."""
        out, filled = [], 0
        for chunk in self._chunks:
            out.append(chunk)
            filled += len(chunk)
            if filled >= SEND_BATCH:
                break
        else:
            self.done = True
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        """`data` gzipped as the next part of the stream (ended once `done`); as is without gzip."""
        if self._z is None:
            return data
        out = self._z.compress(data)
        return out + self._z.flush() if self.done else out

    def read(self) -> bytes:
        return self.compress(self.read_raw())


async def _stream(
    writer: asyncio.StreamWriter, body: _Body, ctype: str, version: str, keep_alive: bool, head_only: bool
) -> None:
    try:
        first = await asyncio.to_thread(body.read_raw)
    except Exception:
        log.exception("metrics: rendering /metrics failed")
        await _respond(writer, 500, b"rendering the metrics failed\n", keep_alive=False)
        raise ConnectionAbortedError from None
    if body.done:  # it all fits in one batch: say how long it is, compress only if worth it
        if not body.gzip or len(first) < GZIP_MIN:
            await _respond(writer, 200, first, ctype, keep_alive=keep_alive, head_only=head_only)
        else:
            data = body.compress(first)
            extra = (("Content-Encoding", "gzip"),)
            await _respond(writer, 200, data, ctype, keep_alive=keep_alive, extra=extra, head_only=head_only)
        return
    # HTTP/1.0 knows no chunked encoding: its body ends when the connection closes.
    chunked = version == "HTTP/1.1"
    fields = [
        ("Content-Type", ctype),
        ("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close"),
    ]
    if chunked:
        fields.append(("Connection", "keep-alive" if keep_alive else "close"))
    if body.gzip:
        fields.append(("Content-Encoding", "gzip"))
    writer.write(_head(200, fields))
    if head_only:
        await writer.drain()
        return
    data = await asyncio.to_thread(body.compress, first)
    try:
        while True:
            if data:
                writer.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                await writer.drain()  # back-pressure: never buffer the whole body in the transport
            if body.done:
                break
            data = await asyncio.to_thread(body.read)
    except ConnectionError:
        raise  # the scraper went away
    except Exception:
        # The head is sent: the scraper can only be told by a truncated body.
        log.exception("metrics: rendering /metrics failed mid-stream; dropping the connection")
        writer.transport.abort()
        raise ConnectionAbortedError from None
    if chunked:  # else the connection closes to end the body (keep-alive is HTTP/1.1 only)
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _parse(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1.") or not path.startswith("/"):
        return None
    headers = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
    return method, path, version, headers


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    keep_alive: bool,
    extra: tuple[tuple[str, str], ...] = (),
    head_only: bool = False,
) -> None:
    fields = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive" if keep_alive else "close"),
        *extra,
    ]
    writer.write(_head(status, fields))
    if not head_only:
        writer.write(body)
    await writer.drain()


def _head(status: int, fields: list[tuple[str, str]]) -> bytes:
    head = f"HTTP/1.1 {status} {REASONS[status]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return (head + "\r\n").encode("latin-1")


def listen_problem(host: str, port: int) -> OSError | None:
    """Why `serve_metrics(host, port)` would fail (in use, not an address of this machine,
    privileged), or None: binds as asyncio's server does (SO_REUSEADDR) and releases at once.
    For `curfew check` and the start of `curfew run`."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None
