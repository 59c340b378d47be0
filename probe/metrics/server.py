"""A small asyncio HTTP/1.1 server for Prometheus: GET /metrics, GET / and GET /healthz.

Rendering runs in a worker thread so a large scrape does not stall the probes on the event
loop, and is streamed: the exposition is pulled from `Metrics.render_chunks` about
`SEND_BATCH` bytes at a time, gzipped incrementally when the scraper accepts it (Prometheus
does), and sent with chunked transfer encoding, so neither the body nor its compressed form is
ever held whole. A body that fits in one batch is sent with a Content-Length instead.
Connections are kept alive between scrapes, as Prometheus does.

The port is reachable by every local user, and whatever it holds open the probes cannot use
(issue 12: clients that connected, pipelined requests and never read ran the daemon out of
descriptors, and its probes failed as if censored). So the server defends the daemon first
(`Limits`):

- at most `max_connections` at once; a connection beyond that takes the place of the one idle
  the longest (waiting for a request), else of the one whose client has not read for the
  longest (`probe.metrics.admission.choose_victim`), else waits in the kernel's backlog;
- it stops accepting while fewer than `reserve` descriptors are free (the probes' share);
- a request head must arrive within `head_timeout` of its first byte (slowloris) and within
  `idle_timeout` of the previous response; a head is at most `MAX_HEAD` bytes;
- a response must make progress every `write_timeout` and be sent within `response_timeout`
  (a client that never reads is dropped); a connection serves at most `max_requests`
  requests, and pipelined ones are read only as the previous response is sent;
- one batch is rendered at a time, whatever the number of connections (`_render`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

from probe.metrics.admission import FreeDescriptors, Limits, Slot, choose_victim
from probe.metrics.collector import Metrics

log = logging.getLogger(__name__)

MAX_HEAD: Final = 16 * 1024
GZIP_MIN: Final = 4096  # below this, compressing costs more than it saves
SEND_BATCH: Final = 1 << 20
"""About how many bytes of exposition text are rendered (and compressed) per trip to the thread."""
BACKLOG: Final = 64
ACCEPT_PAUSE: Final = 0.5
"""Seconds to wait before trying again when the server may not (or cannot) accept."""
LOG_EVERY: Final = 60.0
"""At most one line per this many seconds about refused or dropped connections."""


@dataclass(frozen=True)
class _Serving:
    """What every write and render path of one connection's task needs (see `_CURRENT`)."""

    conn: _Connection
    write_timeout: float
    render_gate: asyncio.Semaphore


_CURRENT: ContextVar[_Serving | None] = ContextVar("metrics_connection", default=None)
"""Set in each connection's own task, so the write and render helpers see its limits without
threading them through every call."""


async def _drain(writer: asyncio.StreamWriter) -> None:
    """Wait until the client has taken enough of what was written; TimeoutError if it does not."""
    current = _CURRENT.get()
    if current is None:
        await writer.drain()
        return
    current.conn.stalled_since = time.monotonic()
    try:
        await asyncio.wait_for(writer.drain(), current.write_timeout)
    finally:
        current.conn.stalled_since = None


async def _render(fn: Callable[..., bytes], *args: bytes) -> bytes:
    """Run `fn` (rendering or compressing a batch) in a worker thread, one connection at a time.

    Pipelined scrapes on many connections would otherwise keep several threads rendering at
    once, and the probes' event loop would wait for the interpreter behind them (time that
    shows up in phase durations and timeouts). The gate is held per batch, never while a
    client is being waited on.
    """
    current = _CURRENT.get()
    if current is None:
        return await asyncio.to_thread(fn, *args)
    async with current.render_gate:
        return await asyncio.to_thread(fn, *args)


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


class _Connection(Slot):
    """One client connection, with what the admission policy reads (`Slot`)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__(idle_since=time.monotonic())
        self.writer = writer

    def abort(self) -> None:
        self.writer.transport.abort()  # the handler then sees the connection gone and returns


class MetricsServer:
    """A running metrics endpoint; `port` is the bound port (useful when asked for port 0)."""

    def __init__(self, metrics: Metrics, limits: Limits | None = None) -> None:
        self._metrics = metrics
        self.limits = limits or Limits()
        self._listener: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._changed = asyncio.Event()
        self._render_gate = asyncio.Semaphore(1)
        self._free = FreeDescriptors()
        self._refused = 0
        self._logged_at = -LOG_EVERY
        self.host = ""
        self.port = 0

    @property
    def connections(self) -> int:
        """How many client connections are open now."""
        return len(self._connections)

    async def _start(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        self.host, self.port = listener.getsockname()[:2]
        self._acceptor = asyncio.ensure_future(self._accept_loop(listener))

    async def close(self) -> None:
        """Stop listening and drop open connections (an in-flight scrape is abandoned)."""
        if self._acceptor is None:
            return
        self._acceptor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._acceptor
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections.values()):
            conn.abort()
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)

    # -- accepting, within the limits --------------------------------------------------------

    def _short(self) -> bool:
        """At the connection cap, or too few descriptors left for the rest of the daemon."""
        if len(self._connections) >= self.limits.max_connections:
            return True
        free = self._free(time.monotonic())
        return free is not None and free < self.limits.reserved()

    def _victim(self) -> _Connection | None:
        victim = choose_victim(self._connections.values(), time.monotonic())
        return victim if isinstance(victim, _Connection) else None

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._short() and self._victim() is None:
                # Every slot is busy with a client that reads, or the descriptors left are the
                # probes': leave newcomers in the backlog until that changes.
                self._note_refused("paused")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), ACCEPT_PAUSE)
                continue
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: the machine is short; the backlog waits, and so do we.
                self._note_refused(f"accept-failed:{errno.errorcode.get(exc.errno or 0, exc.errno)}")
                await asyncio.sleep(ACCEPT_PAUSE)
                continue
            self._free.took(client.fileno())
            if not await self._make_room():
                client.close()
                self._note_refused("limit")
                continue
            try:
                await self._open(loop, client)
            except OSError:
                client.close()

    async def _make_room(self) -> bool:
        """Make room for a connection just accepted; False if none came in time.

        The victim seen before accepting may have got busy while accept waited: then
        the newcomer (one descriptor, as accepting stops meanwhile) waits for a slot rather
        than being turned away, for as long as a stalled write may hold one.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.write_timeout + ACCEPT_PAUSE
        while self._short():
            victim = self._victim()
            if victim is not None:
                self._evict(victim)
                return True
            if loop.time() >= deadline:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), ACCEPT_PAUSE)
        return True

    async def _open(self, loop: asyncio.AbstractEventLoop, client: socket.socket) -> None:
        client.setblocking(False)
        reader = asyncio.StreamReader(limit=MAX_HEAD)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, client)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        conn = _Connection(writer)
        task = asyncio.ensure_future(self._handle(reader, conn))
        self._connections[task] = conn

    def _evict(self, victim: _Connection) -> None:
        """Drop an idle connection for a newcomer; it stops counting against the cap at once."""
        for task, conn in list(self._connections.items()):
            if conn is victim:
                del self._connections[task]
        victim.abort()
        self._note_refused("evicted-idle")

    def _note_refused(self, why: str) -> None:
        if why != "paused":
            self._refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning(
                "event=metrics-connection-limited reason=%s connections=%d free_descriptors=%s "
                "refused_or_evicted=%d",
                why,
                len(self._connections),
                self._free(time.monotonic()),
                self._refused,
            )

    async def _handle(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        writer = conn.writer
        _CURRENT.set(_Serving(conn, self.limits.write_timeout, self._render_gate))
        finished = False
        try:
            await _serve_connection(self._metrics, self.limits, reader, conn)
            finished = True
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the scraper went away, idled out, was too slow, or we are closing
        except Exception:
            log.exception("metrics: serving a connection failed")
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._connections.pop(task, None)
            try:
                if finished:  # let the last response out, but not for longer than a stalled write
                    writer.close()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(writer.wait_closed(), self.limits.write_timeout)
            finally:
                writer.transport.abort()  # never wait on a client that does not read
                self._changed.set()


async def serve_metrics(
    metrics: Metrics, host: str, port: int, limits: Limits | None = None
) -> MetricsServer:
    """Listen on host:port (port 0 picks a free one) and serve `metrics` until `close()`."""
    server = MetricsServer(metrics, limits)
    await server._start(host, port)
    return server


async def _read_head(reader: asyncio.StreamReader, limits: Limits) -> bytes:
    """The next request head: its first byte within idle_timeout, the rest within head_timeout."""
    async with asyncio.timeout(limits.idle_timeout) as deadline:
        first = await reader.readexactly(1)
        deadline.reschedule(asyncio.get_running_loop().time() + limits.head_timeout)
        return first + await reader.readuntil(b"\r\n\r\n")


async def _serve_connection(
    metrics: Metrics, limits: Limits, reader: asyncio.StreamReader, conn: _Connection
) -> None:
    writer = conn.writer
    for served in range(1, limits.max_requests + 1):
        conn.idle_since = time.monotonic()
        try:
            head = await _read_head(reader, limits)
        except asyncio.LimitOverrunError:
            conn.idle_since = None
            await _send(limits, _respond(writer, 400, b"request head too large\n", keep_alive=False))
            return
        conn.idle_since = None  # busy: not to be evicted for a newcomer
        request = _parse(head)
        if request is None:
            await _send(limits, _respond(writer, 400, b"bad request\n", keep_alive=False))
            return
        method, path, version, headers = request
        keep_alive = (
            headers.get("connection", "").lower() != "close"
            and version == "HTTP/1.1"
            and served < limits.max_requests
        )
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            await _send(limits, _respond(writer, 400, b"a request body is not expected\n", keep_alive=False))
            return
        await _send(limits, _answer(metrics, limits, writer, method, path, version, headers, keep_alive))
        if not keep_alive:
            return


async def _send(limits: Limits, response: Coroutine[object, object, None]) -> None:
    """Send one response within `response_timeout` (TimeoutError past it)."""
    async with asyncio.timeout(limits.response_timeout):
        await response


async def _answer(
    metrics: Metrics,
    limits: Limits,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    version: str,
    headers: dict[str, str],
    keep_alive: bool,
) -> None:
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
        first = await _render(body.read_raw)
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
        await _drain(writer)
        return
    data = await _render(body.compress, first)
    try:
        while True:
            if data:
                writer.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                await _drain(writer)  # back-pressure: never buffer the whole body in the transport
            if body.done:
                break
            data = await _render(body.read)
    except ConnectionError:
        raise  # the scraper went away
    except Exception:
        # The head is sent: the scraper can only be told by a truncated body.
        log.exception("metrics: rendering /metrics failed mid-stream; dropping the connection")
        writer.transport.abort()
        raise ConnectionAbortedError from None
    if chunked:  # else the connection closes to end the body (keep-alive is HTTP/1.1 only)
        writer.write(b"0\r\n\r\n")
        await _drain(writer)


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
    await _drain(writer)


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
