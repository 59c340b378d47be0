"""The HTTP layer over an in-memory stream: parsing, caps, failures (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from probe.clock import SYSTEM_CLOCK
from probe.layers.http import download, fetch


class FakeStream:
    """Replays canned server bytes; records what the client sent."""

    def __init__(self, chunks: list[bytes], then: BaseException | None = None, hang: bool = False) -> None:
        self.chunks = list(chunks)
        self.then = then
        self.hang = hang
        self.sent = b""
        self.closed = False
        self.on_receive: Callable[[int], None] | None = None

    async def send(self, data: bytes) -> None:
        self.sent += data

    async def recv(self) -> bytes:
        if self.chunks:
            chunk = self.chunks.pop(0)
            if self.on_receive is not None:
                self.on_receive(len(chunk))
            return chunk
        if self.then is not None:
            raise self.then
        if self.hang:
            await asyncio.sleep(3600)
        return b""

    def close(self) -> None:
        self.closed = True


PAGE = b"<html><head><title>\n  Facebook - log in or sign up </title></head><body>hello</body></html>"


def response(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Length: %d\r\nServer: lab\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


async def test_fetch_records_status_headers_title_and_hash() -> None:
    stream = FakeStream([response(PAGE)[:20], response(PAGE)[20:]])
    obs = await fetch(
        stream, "https://www.facebook.com/x?y=1", "127.0.1.1", "UA/1", 4096, 5, SYSTEM_CLOCK, 0.0
    )
    assert stream.sent.startswith(b"GET /x?y=1 HTTP/1.1\r\n")
    assert b"host: www.facebook.com\r\n" in stream.sent.lower()
    assert obs.failure is None
    assert obs.status == 200
    assert obs.title == "Facebook - log in or sign up"
    assert obs.body_length == len(PAGE)
    assert obs.header("server") == "lab"
    assert obs.body_truncated is False
    assert obs.ttfb is not None and obs.ttfb >= 0


async def test_body_is_read_up_to_the_cap() -> None:
    body = b"x" * 10_000
    obs = await fetch(FakeStream([response(body)]), "http://a/", None, "UA", 4096, 5, SYSTEM_CLOCK, 0.0)
    assert obs.body_length == 4096
    assert obs.body_truncated is True


async def test_reset_before_response_is_connection_reset() -> None:
    obs = await fetch(
        FakeStream([], then=ConnectionResetError(104, "reset")),
        "http://a/",
        None,
        "UA",
        4096,
        5,
        SYSTEM_CLOCK,
        0.0,
    )
    assert obs.failure == "connection_reset"
    assert obs.status is None


async def test_close_before_response_is_eof() -> None:
    obs = await fetch(FakeStream([]), "http://a/", None, "UA", 4096, 5, SYSTEM_CLOCK, 0.0)
    assert obs.failure == "eof_error"


async def test_garbage_is_http_request_failed() -> None:
    obs = await fetch(
        FakeStream([b"SSH-2.0-OpenSSH\r\n\r\n"]), "http://a/", None, "UA", 4096, 5, SYSTEM_CLOCK, 0.0
    )
    assert obs.failure == "http_request_failed"


async def test_silent_server_times_out_within_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    obs = await fetch(FakeStream([], hang=True), "http://a/", None, "UA", 4096, 0.2, SYSTEM_CLOCK, 0.0)
    assert obs.failure == "generic_timeout_error"
    assert loop.time() - start < 1.0


async def test_body_delimited_by_close() -> None:
    raw = b"HTTP/1.1 200 OK\r\nServer: old\r\n\r\n" + PAGE
    obs = await fetch(FakeStream([raw]), "http://a/", None, "UA", 4096, 5, SYSTEM_CLOCK, 0.0)
    assert obs.failure is None
    assert obs.body_length == len(PAGE)


async def test_redirect_is_recorded_not_followed() -> None:
    raw = response(b"", b"302 Found", b"Location: http://warning.lab/\r\n")
    obs = await fetch(FakeStream([raw]), "http://a/", None, "UA", 4096, 5, SYSTEM_CLOCK, 0.0)
    assert obs.status == 302
    assert obs.header("Location") == "http://warning.lab/"


@pytest.mark.parametrize("cap", [1000, 5000])
async def test_download_stops_at_the_byte_cap(cap: int) -> None:
    body = b"y" * 8000
    result = await download(
        FakeStream([response(body)[:3000], response(body)[3000:]]),
        "http://a/bulk",
        "UA",
        cap,
        5,
        0.0,
        SYSTEM_CLOCK,
    )
    assert result.failure is None
    assert result.bytes >= min(cap, len(body))
    assert result.samples[-1][1] == result.bytes
    assert [s[1] for s in result.samples] == sorted(s[1] for s in result.samples)


async def test_download_stops_at_the_time_cap_without_failure() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000
    result = await download(
        FakeStream([head], hang=True), "http://a/bulk", "UA", 10**6, 0.2, 0.05, SYSTEM_CLOCK
    )
    assert result.failure is None
    assert result.complete is False
    assert result.bytes == len(head)  # bytes off the socket, headers included
