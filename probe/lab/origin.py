"""The real sites: a small HTTP/1.1 server per target on an internal loopback port.

Any path returns the target's stable HTML page; the bulk path returns `bulk_bytes` bytes
as fast as the reader takes them. Every response carries ``Connection: close``.
The page and the blockpage are built by pure functions so tests and the censor share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from html import escape

from probe.lab.scenario import TargetSpec

ORIGIN_SERVER = "curfew-lab-origin/1"
ORIGIN_HEADER = "X-Lab-Origin"
_CHUNK = 64 * 1024
_BULK_BLOCK = bytes(range(256)) * (_CHUNK // 256)
_MAX_HEAD = 16 * 1024


def page_title(target: TargetSpec) -> str:
    return target.title or target.name


def page_body(target: TargetSpec) -> bytes:
    """The target's HTML page: a few KB, identical on every request."""
    title = escape(page_title(target))
    paragraphs = "\n".join(
        f"<p>Story {i} on {escape(target.hosts[0])}: the lab keeps this text stable so that "
        f"pages fetched from different vantages can be compared byte for byte.</p>"
        for i in range(1, 25)
    )
    html = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><h1>{title}</h1>\n{paragraphs}\n</body></html>\n"
    )
    return html.encode()


def response_head(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def read_request_head(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    """Read one request head; return (method, path) or None if the client sent garbage."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    return parts[0], parts[1]


async def serve_page(writer: asyncio.StreamWriter, target: TargetSpec, method: str, path: str) -> None:
    """Write the response for `path` on `target` (page or bulk object)."""
    common = [("Server", ORIGIN_SERVER), (ORIGIN_HEADER, target.name), ("Connection", "close")]
    if target.bulk and path.split("?", 1)[0] == target.bulk_path:
        size = target.bulk_bytes
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size)), *common]
        writer.write(response_head(200, "OK", headers))
        if method == "HEAD":
            return
        sent = 0
        while sent < size:
            block = _BULK_BLOCK[: min(_CHUNK, size - sent)]
            writer.write(block)
            sent += len(block)
            await writer.drain()
        return
    body = page_body(target)
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *common]
    writer.write(response_head(200, "OK", headers) + (b"" if method == "HEAD" else body))
    await writer.drain()


class Origin:
    """One target's origin server on 127.0.0.1:<ephemeral> (TLS when `context` is given)."""

    def __init__(self, target: TargetSpec, context: ssl.SSLContext | None) -> None:
        self.target = target
        self.context = context
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.context, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(read_request_head(reader), 30)
            if request is not None:
                await serve_page(writer, self.target, *request)
        except (TimeoutError, OSError, ssl.SSLError):
            pass  # the client went away; nothing to record on the server side
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)
