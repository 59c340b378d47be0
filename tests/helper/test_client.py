"""The helper client against real loopback helpers: good, dead, slow, garbage, huge, picky."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from probe.helper.client import REASONS, HelperAnswer, HelperClient, HelperEndpoint
from probe.helper.protocol import THRequest, parse_request

GOLDEN = (Path(__file__).parent / "golden" / "response_oohelperd.json").read_bytes().strip()
REQUEST = THRequest("https://www.example.com/", {"User-Agent": ("ua",)}, ("93.184.216.34:443",))
HOST = "127.0.0.1"

Behaviour = Callable[[bytes, dict[str, str], asyncio.StreamWriter], Awaitable[None]]


def reply(status: int, body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    ).encode() + body


@asynccontextmanager
async def helper(behaviour: Behaviour) -> AsyncIterator[str]:
    """A loopback helper whose answer is `behaviour(body, headers, writer)`; yields its URL."""
    tasks: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await behaviour(body, headers, writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield f"http://{HOST}:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def good(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    parse_request(body)  # the client sent a valid THRequest
    writer.write(reply(200, GOLDEN))


async def slow(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def garbage(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    writer.write(reply(200, b"<html>not json</html>"))


async def wrong_shape(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    writer.write(reply(200, b'{"dns": {"addrs": "1.2.3.4"}}'))


async def huge(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    for _ in range(64):  # 4 MiB without a Content-Length
        writer.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")


async def server_error(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    writer.write(reply(500, b"oops"))


async def wants_token(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    if headers.get("authorization") == "Bearer s3cret":
        writer.write(reply(200, GOLDEN))
    else:
        writer.write(reply(401, b"who are you"))


async def gzipped(body: bytes, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
    import gzip

    writer.write(reply(200, gzip.compress(GOLDEN), "Content-Encoding: gzip\r\n"))


def dead_url() -> str:
    """A loopback port nobody listens on (bound then closed, so a connect is refused)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    return f"http://{HOST}:{port}/"


async def ask(*urls: str, timeout: float = 2.0, deadline: float | None = None) -> HelperAnswer:
    client = HelperClient([HelperEndpoint(u, name=f"h{i}") for i, u in enumerate(urls)], timeout=timeout)
    try:
        return await client.ask(REQUEST, deadline=deadline)
    finally:
        await client.aclose()


async def test_a_good_helper_answers() -> None:
    async with helper(good) as url:
        answer = await ask(url)
    assert answer.response is not None and answer.helper == "h0" and answer.attempts == ()
    assert answer.response.tls_handshake["93.184.216.34:443"].status is True
    assert answer.reason is None


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (garbage, "bad_answer"),
        (wrong_shape, "bad_answer"),
        (huge, "too_large"),
        (server_error, "http_status"),
        (wants_token, "http_status"),
        (gzipped, "bad_answer"),
    ],
)
async def test_a_bad_helper_fails_with_a_reason_and_the_next_one_answers(
    behaviour: Behaviour, reason: str
) -> None:
    async with helper(behaviour) as bad, helper(good) as ok:
        answer = await ask(bad, ok)
    assert answer.response is not None and answer.helper == "h1"
    assert [(a.helper, a.reason) for a in answer.attempts] == [("h0", reason)]
    assert reason in REASONS


async def test_a_dead_helper_is_skipped_at_once() -> None:
    async with helper(good) as ok:
        start = time.monotonic()
        answer = await ask(dead_url(), ok)
    assert answer.response is not None and answer.helper == "h1"
    assert answer.attempts[0].reason == "unreachable"
    assert time.monotonic() - start < 2.0


async def test_a_slow_helper_times_out_within_its_timeout_and_the_next_is_asked() -> None:
    async with helper(slow) as stuck, helper(good) as ok:
        start = time.monotonic()
        answer = await ask(stuck, ok, timeout=0.5)
        elapsed = time.monotonic() - start
    assert answer.response is not None and answer.helper == "h1"
    assert answer.attempts[0].reason == "timeout"
    assert elapsed < 3.0


async def test_the_deadline_bounds_every_helper_together() -> None:
    async with helper(slow) as a, helper(slow) as b:
        start = time.monotonic()
        answer = await ask(a, b, timeout=5.0, deadline=0.5)
        elapsed = time.monotonic() - start
    assert answer.response is None
    assert answer.reason == "timeout"
    assert [x.reason for x in answer.attempts] == ["timeout", "timeout"]
    assert elapsed < 2.0


async def test_all_helpers_failing_reports_each_attempt() -> None:
    async with helper(garbage) as bad:
        answer = await ask(dead_url(), bad)
    assert answer.response is None
    assert [(a.helper, a.reason) for a in answer.attempts] == [("h0", "unreachable"), ("h1", "bad_answer")]
    assert answer.reason == "bad_answer"


async def test_the_token_file_is_sent_as_a_bearer_token(tmp_path: Path) -> None:
    token = tmp_path / "th.token"
    token.write_text("s3cret\n")
    async with helper(wants_token) as url:
        client = HelperClient([HelperEndpoint(url, token_file=token)], timeout=2.0)
        try:
            answer = await client.ask(REQUEST)
        finally:
            await client.aclose()
    assert answer.response is not None


def test_a_missing_or_empty_token_file_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HelperClient([HelperEndpoint("http://127.0.0.1:1/", token_file=tmp_path / "absent")])
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        HelperClient([HelperEndpoint("http://127.0.0.1:1/", token_file=tmp_path / "empty")])


def test_the_label_is_the_name_or_the_host_never_the_url() -> None:
    assert HelperEndpoint("https://th.example.org:8443/path?x=1").label == "th.example.org"
    assert HelperEndpoint("https://th.example.org/", name="ams").label == "ams"
