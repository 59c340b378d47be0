"""A small HTTP/1.1 server for untrusted clients, on asyncio streams and h11.

h11 parses (and refuses) what clients send, so request smuggling and malformed heads end in a
400 from one well-tested parser. Around it, the limits a public service needs:

- at most `max_connections` open connections, `max_per_client` from one address (more are
  answered 503 and closed at once);
- a whole request head within `header_timeout` (not per read: a slowloris client trickling a
  byte at a time is cut off all the same), 408 otherwise; an idle keep-alive connection is
  closed after the same time;
- a head of at most `MAX_HEAD` bytes (431) and a body of at most `max_body` bytes, declared
  or actually sent (413), within `body_timeout` (408);
- an answer the client does not read within `send_timeout` drops the connection;
- the handler sees the head first and may refuse before any body is read (auth, rate limit).

The metrics endpoint in probe/metrics/server.py streams a large exposition to a trusted
scraper; this one answers small requests from anyone, hence two servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import h11

log = logging.getLogger("probe.helper")

MAX_HEAD: Final = 16 * 1024
READ_SIZE: Final = 64 * 1024
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 1 << 20
REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


@dataclass(frozen=True)
class Head:
    """A request's head: method, target (path and query), headers (names lowercased), client IP."""

    method: str
    target: str
    headers: dict[str, str]
    client: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    close: bool = False


class Handler(Protocol):
    async def on_head(self, head: Head) -> Response | None:
        """A refusal before the body is read, or None to go on."""

    async def on_request(self, head: Head, body: bytes) -> Response:
        """The answer to a complete request."""

    def on_refused(self, client: str, status: int, reason: str) -> None:
        """The server itself refused a client (limits, timeouts, bad HTTP): count and log it."""


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512
    max_per_client: int = 32
    """Open connections from one address: one client cannot hold every slot open."""
    max_body: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    send_timeout: float = 10.0
    """Seconds an answer may wait on a client that does not read it (else the slot is held forever)."""


class _Refuse(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HttpServer:
    """Serves `handler` on host:port until `close()`; `port` is the bound one."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits,
        tls: ssl.SSLContext | None = None,
        client_key: Callable[[str], str] = str,
    ) -> None:
        """`client_key` maps a peer address to whom `max_per_client` counts (e.g. an IPv6 /64)."""
        self._handler = handler
        self._client_key = client_key
        self._limits = limits
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._per_client: dict[str, int] = {}
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._on_connect,
            host,
            port,
            limit=READ_SIZE,
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    @property
    def connections(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        """Stop listening and drop open connections (in-flight requests are cancelled)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        task = asyncio.current_task()
        key = self._client_key(client)
        mine = self._per_client.get(key, 0)
        if (
            len(self._tasks) >= self._limits.max_connections
            or mine >= self._limits.max_per_client
            or task is None
        ):
            self._handler.on_refused(client, 503, "too_many_connections")
            with contextlib.suppress(Exception):
                if self._tls is None:  # a TLS client could not read a plaintext answer
                    writer.write(_simple(503, b"too many connections\n"))
                writer.close()
            return
        self._tasks.add(task)
        self._per_client[key] = mine + 1
        try:
            if self._tls is not None:
                # TLS only once the connection is counted: a handshake that never ends would
                # otherwise hold a descriptor outside every cap.
                await writer.start_tls(self._tls, ssl_handshake_timeout=self._limits.header_timeout)
            await self._serve(reader, writer, client)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away
        except asyncio.CancelledError:
            # Only close() cancels a connection's task; ending it normally keeps asyncio's
            # stream callback from logging the cancellation as an error.
            pass
        finally:
            self._tasks.discard(task)
            left = self._per_client.pop(key, 1) - 1
            if left > 0:
                self._per_client[key] = left
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        limits = self._limits
        while True:
            try:
                try:
                    async with asyncio.timeout(limits.header_timeout):
                        event = await _next_event(conn, reader, MAX_HEAD)
                except TimeoutError:
                    if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                        return  # an idle keep-alive connection: close quietly
                    raise _Refuse(408, "header_timeout") from None
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request)
                head = Head(
                    method=event.method.decode("ascii", "replace"),
                    target=event.target.decode("ascii", "replace"),
                    headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers},
                    client=client,
                )
                refusal = await self._handler.on_head(head)
                if refusal is not None:
                    await _send(conn, writer, refusal, True, limits.send_timeout)
                    await _linger(reader, writer)
                    return
                length = head.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limits.max_body:
                    raise _Refuse(413, "request_too_large")
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
                try:
                    async with asyncio.timeout(limits.body_timeout):
                        body = await _read_body(conn, reader, limits.max_body)
                except TimeoutError:
                    raise _Refuse(408, "body_timeout") from None
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint if exc.error_status_hint in REASONS else 400
                reason = "header_too_large" if status == 431 else "bad_http"
                await self._refuse(conn, reader, writer, client, status, reason)
                return
            except _Refuse as exc:
                await self._refuse(conn, reader, writer, client, exc.status, exc.reason)
                return
            response = await self._handler.on_request(head, body)
            await _send(conn, writer, response, response.close, limits.send_timeout)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _refuse(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: str,
        status: int,
        reason: str,
    ) -> None:
        self._handler.on_refused(client, status, reason)
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                response = Response(status, f"{reason}\n".encode())
                await _send(conn, writer, response, True, self._limits.send_timeout)
                await _linger(reader, writer)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After a refusal sent before the request was read: let the client read it.

    Closing a socket with unread input makes the kernel answer with a reset, and a client still
    sending its body would see "connection reset" instead of the 401 or 413. So: half-close
    (plain TCP), then read and drop what the client still sends, up to `LINGER_BYTES` or
    `LINGER_SECONDS`, whichever comes first (a flood gets nothing more than that).
    """
    if writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
    dropped = 0
    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
        async with asyncio.timeout(LINGER_SECONDS):
            while dropped < LINGER_BYTES:
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                dropped += len(data)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, head_limit: int = 0) -> h11.Event:
    """The next h11 event; with `head_limit`, a request head arriving in more bytes is a 431.

    (h11's own limit applies to an incomplete head only; one that arrives whole in a single
    read would slip past it.)
    """
    received = len(conn.trailing_data[0])
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if head_limit and len(conn.trailing_data[0]) > head_limit:
                raise _Refuse(431, "header_too_large")  # that much buffered and still no whole head
            data = await reader.read(READ_SIZE)
            received += len(data)
            conn.receive_data(data)
            continue
        assert isinstance(event, h11.Event)
        # What came with the head but is not part of it (the body) is still in h11's buffer.
        if (
            head_limit
            and isinstance(event, h11.Request)
            and received - len(conn.trailing_data[0]) > head_limit
        ):
            raise _Refuse(431, "header_too_large")
        return event


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        event = await _next_event(conn, reader, MAX_HEAD)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > max_body:
                raise _Refuse(413, "request_too_large")
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionResetError("the client closed mid-body")


async def _send(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    response: Response,
    force_close: bool,
    timeout: float,
) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        ("Server", "curfew-helper"),
        *response.headers,
    ]
    if force_close:
        headers.append(("Connection", "close"))
    data = conn.send(
        h11.Response(status_code=response.status, headers=headers, reason=REASONS.get(response.status, b""))
    )
    writer.write(
        (data or b"")
        + (conn.send(h11.Data(data=response.body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
    except TimeoutError:
        # close() would wait for the unread buffer to drain, i.e. forever: abort drops it.
        writer.transport.abort()
        raise ConnectionResetError("the client does not read its answer") from None


def _simple(status: int, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status} {REASONS[status].decode()}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
