"""A small asyncio HTTP/1.1 server for Prometheus: GET /metrics, GET / and GET /healthz.

Rendering runs in a worker thread so a large scrape does not stall the probes on the event
loop. Connections are kept alive between scrapes, as Prometheus does; an idle connection is
closed after `IDLE_TIMEOUT`. gzip is used when the scraper accepts it (Prometheus does).
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

INDEX: Final = (
    b"<!DOCTYPE html>\n<html><head><title>curfew</title></head><body>\n"
    b'<h1>curfew</h1>\n<p>Internet-censorship measurements: <a href="/metrics">metrics</a>, '
    b'<a href="/healthz">health</a>.</p>\n</body></html>\n'
)
REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


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
            chunks, ctype, encoding = await asyncio.to_thread(_render, metrics, headers.get("accept", ""), gz)
            extra = (("Content-Encoding", encoding),) if encoding else ()
            await _respond(
                writer, 200, chunks, ctype, keep_alive=keep_alive, extra=extra, head_only=head_only
            )
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


def _render(metrics: Metrics, accept: str, gz: bool) -> tuple[list[bytes], str, str | None]:
    chunks, ctype = metrics.render_chunks(accept)
    if not gz or sum(map(len, chunks)) < GZIP_MIN:
        return chunks, ctype, None
    # Level 1: at 10,000 pairs the text is ~120 MB and compresses ~20x even so (docs/benchmarks.md).
    z = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    out = [piece for piece in map(z.compress, chunks) if piece]
    out.append(z.flush())
    return out, ctype, "gzip"


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
    body: bytes | list[bytes],
    content_type: str = "text/plain; charset=utf-8",
    *,
    keep_alive: bool,
    extra: tuple[tuple[str, str], ...] = (),
    head_only: bool = False,
) -> None:
    fields = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body) if isinstance(body, bytes) else sum(map(len, body)))),
        ("Connection", "keep-alive" if keep_alive else "close"),
        *extra,
    ]
    head = f"HTTP/1.1 {status} {REASONS[status]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    writer.write(head.encode("latin-1"))
    if head_only:
        pass
    elif isinstance(body, bytes):
        writer.write(body)
    else:
        for batch in _batches(body, SEND_BATCH):
            writer.writelines(batch)
            await writer.drain()  # back-pressure: never buffer the whole body in the transport
    await writer.drain()


def _batches(chunks: list[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    filled = 0
    for chunk in chunks:
        batch.append(chunk)
        filled += len(chunk)
        if filled >= size:
            yield batch
            batch, filled = [], 0
    if batch:
        yield batch
