"""The helper as a public service: every refusal has a status, a counter and one log line;
hostile clients (slowloris, garbage, floods) do not stall it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trustme

from probe.helper.protocol import FLAG_BOGON, FLAG_RESOLVED_BY_TH, THRequest, dumps, parse_response
from probe.helper.server import RunningHelper
from tests.helper.conftest import helper, post

PUBLIC = dumps(THRequest("https://www.example.com/", {}, ("93.184.216.34:443",)))


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event=helper-refused" in r.getMessage()]


def count(running: RunningHelper, outcome: str) -> float:
    value = running.service.metrics.registry.get_sample_value(
        "curfew_helper_requests_total", {"outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "https://10.1.2.3/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9090/",
        "http://192.168.1.1/",
        "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
        "http://[::a9fe:a9fe]/",  # IPv4-compatible 169.254.169.254
    ],
)
async def test_private_targets_are_refused_without_allow_private(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    async with helper() as running:
        resp = await post(running, dumps(THRequest(url)))
        assert resp.status_code == 403
        assert b"private_target" in resp.content
        assert count(running, "private_target") == 1
    (line,) = refusals(caplog)
    assert "client=127.0.0.1 status=403 reason=private_target" in line


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "bad_json"),
        (b'{"http_request": 42}', 400, "bad_request"),
        (b"[1, 2, 3]", 400, "bad_request"),
        (dumps(THRequest("ftp://example.com/")), 400, "bad_url"),
        (dumps(THRequest("")), 400, "bad_url"),
        (dumps(THRequest("https://www.example.com/\r\nX: y")), 400, "bad_url"),
    ],
)
async def test_garbage_is_a_400_with_a_log_line(
    body: bytes, status: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    async with helper() as running:
        resp = await post(running, body)
        assert resp.status_code == status
        assert count(running, reason) == 1
    assert f"status={status} reason={reason}" in refusals(caplog)[0]


async def test_an_oversize_request_is_413_before_it_is_read(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    async with helper(max_request_bytes=1024) as running:
        resp = await post(running, b'{"http_request": "' + b"a" * 5000 + b'"}')
        assert resp.status_code == 413
        assert count(running, "request_too_large") == 1
    assert "status=413 reason=request_too_large" in refusals(caplog)[0]


async def test_an_oversize_chunked_body_is_413_as_it_arrives() -> None:
    async with helper(max_request_bytes=1024) as running:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"x" * 512

        async with httpx.AsyncClient(trust_env=False) as client:
            try:
                resp = await client.post(running.url, content=chunks())
                assert resp.status_code == 413
            except httpx.HTTPError:
                pass  # the helper may close before the client finished sending: also a refusal
        assert count(running, "request_too_large") == 1


async def test_a_body_sent_with_the_head_is_not_counted_as_head() -> None:
    async with helper() as running, raw(running) as (reader, writer):
        body = b"[" + b" " * 40_000 + b"]"  # 40 kB in the same segments as the head
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 400 ")  # judged as a (wrong) request, not a 431


async def test_a_refusal_before_the_body_reaches_a_client_still_sending_it(tmp_path: Path) -> None:
    # Closing with unread input makes the kernel send a reset; the helper drains first.
    token = tmp_path / "token"
    token.write_text("t")
    async with helper(token_file=str(token), max_request_bytes=1 << 20) as running:
        for _ in range(5):
            async with raw(running) as (reader, writer):
                body = b"x" * 500_000
                writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
                writer.write(body)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                answer = await asyncio.wait_for(reader.read(), 5)
                assert answer.startswith(b"HTTP/1.1 401 ")


async def test_too_many_addresses_is_413(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    endpoints = tuple(f"93.184.216.{i}:443" for i in range(1, 6))
    async with helper(max_addresses=4) as running:
        resp = await post(running, dumps(THRequest("https://www.example.com/", {}, endpoints)))
        assert resp.status_code == 413
        assert b"too_many_addresses" in resp.content
    assert "status=413 reason=too_many_addresses detail='5 > 4'" in refusals(caplog)[0]


async def test_the_token_is_required_and_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    token = tmp_path / "token"
    token.write_text("correct-horse\n")
    private = dumps(THRequest("http://127.0.0.1/"))
    async with helper(token_file=str(token)) as running:
        missing = await post(running, private)
        wrong = await post(running, private, {"Authorization": "Bearer battery-staple"})
        basic = await post(running, private, {"Authorization": "Basic Y29ycmVjdC1ob3JzZQ=="})
        right = await post(running, private, {"Authorization": "Bearer correct-horse"})
        assert [missing.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
        assert missing.headers["www-authenticate"] == "Bearer"
        assert right.status_code == 403  # past the token, refused for the private target
        assert count(running, "unauthorized") == 3
    assert sum("status=401 reason=unauthorized" in line for line in refusals(caplog)) == 3


async def test_only_post_to_the_root() -> None:
    async with helper() as running, httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(running.url)).status_code == 405
        assert (await client.post(running.url + "admin", content=PUBLIC)).status_code == 404
        assert count(running, "method_not_allowed") == 1 and count(running, "not_found") == 1


async def test_a_flood_from_one_client_is_rate_limited_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    async with helper(rate=0.5, burst=2) as running:
        statuses = [(await post(running, b"{")).status_code for _ in range(6)]
        assert statuses == [400, 400, 429, 429, 429, 429]
        assert count(running, "rate_limited") == 4
    assert sum("reason=rate_limited" in line for line in refusals(caplog)) == 1


@asynccontextmanager
async def raw(running: RunningHelper) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def test_slowloris_is_cut_off_and_does_not_stall_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "probe.helper")
    async with helper(header_timeout=0.5) as running, raw(running) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()

        async def trickle() -> None:
            for _ in range(40):  # a header byte every 50 ms: each read is quick, the head never ends
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.05)

        trickling = asyncio.ensure_future(trickle())
        start = time.monotonic()
        resp = await post(running, b"{")  # another client is served meanwhile
        assert resp.status_code == 400 and time.monotonic() - start < 0.5
        answer = await asyncio.wait_for(reader.read(), 5)
        trickling.cancel()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert count(running, "header_timeout") == 1
    assert any("status=408 reason=header_timeout" in line for line in refusals(caplog))


async def test_a_body_that_never_comes_is_408() -> None:
    async with helper(body_timeout=0.3) as running, raw(running) as (reader, writer):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert count(running, "body_timeout") == 1


async def test_an_idle_connection_is_closed_quietly() -> None:
    async with helper(header_timeout=0.3) as running, raw(running) as (reader, _):
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert count(running, "header_timeout") == 0


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
)
async def test_broken_http_is_refused_and_the_helper_goes_on(data: bytes, status: int) -> None:
    async with helper() as running:
        async with raw(running) as (reader, writer):
            writer.write(data)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 %d " % status)
        assert (await post(running, b"{")).status_code == 400  # still serving


async def test_connections_over_the_cap_are_turned_away() -> None:
    async with (
        helper(max_connections=2, header_timeout=5) as running,
        raw(running),
        raw(running),
        raw(running) as (third, _),
    ):
        answer = await asyncio.wait_for(third.read(), 5)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert count(running, "too_many_connections") == 1


async def test_one_client_cannot_hold_every_connection() -> None:
    async with (
        helper(max_connections=10, max_connections_per_client=2, header_timeout=5) as running,
        raw(running),
        raw(running),
        raw(running) as (third, _),
    ):
        answer = await asyncio.wait_for(third.read(), 5)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert count(running, "too_many_connections") == 1


async def test_a_numeric_host_that_resolves_to_loopback_is_never_connected_to() -> None:
    # 2130706433 is 127.0.0.1 written as a number: not an IP to the URL check, but the system
    # resolver turns it into 127.0.0.1, which the guard refuses before connecting.
    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with helper() as running:
            resp = await post(running, dumps(THRequest(f"http://2130706433:{port}/")))
    finally:
        listener.close()
        await listener.wait_closed()
    assert resp.status_code == 200
    answer = parse_response(resp.content)
    assert answer.dns.addrs == ("127.0.0.1",)
    assert answer.tcp_connect == {}
    assert answer.http_request.failure == "dns_lookup_error"
    assert answer.ip_info["127.0.0.1"].flags == FLAG_RESOLVED_BY_TH | FLAG_BOGON


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)  # accepts, then says nothing: a measurement that takes long


async def test_every_slot_busy_is_503_not_a_queue() -> None:
    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    slow = dumps(THRequest(f"http://127.0.0.1:{port}/"))
    probe = {"timeouts": {"http_request": 3, "total": 4}}
    try:
        async with helper(probe=probe, allow_private=True, max_concurrency=1) as running:
            first = asyncio.ensure_future(post(running, slow))
            await asyncio.sleep(0.3)
            second = await post(running, slow)
            assert second.status_code == 503
            assert count(running, "overloaded") == 1
            assert running.service.metrics.registry.get_sample_value("curfew_helper_requests_in_flight") == 1
            first.cancel()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_a_tls_listener_from_cert_and_key(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    keys = {
        "tls_cert": str(tmp_path / "cert.pem"),
        "tls_key": str(tmp_path / "key.pem"),
        "header_timeout": 0.5,
    }
    async with helper(**keys) as running:
        assert running.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        async with httpx.AsyncClient(verify=ctx, trust_env=False) as client:
            resp = await client.post(running.url, content=b"{")
        assert resp.status_code == 400
        # A plain-HTTP client on the TLS port gets nowhere and does not stall the helper.
        plain_reader, plain_writer = await asyncio.open_connection("127.0.0.1", running.port)
        plain_writer.write(b"POST / HTTP/1.1\r\n")
        assert await asyncio.wait_for(plain_reader.read(), 5) == b""  # dropped, within the head's time
        plain_writer.close()
        async with httpx.AsyncClient(verify=ctx, trust_env=False) as client:
            assert (await client.post(running.url, content=b"{")).status_code == 400


async def test_the_metrics_endpoint_counts_outcomes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with helper(metrics_listen=f"127.0.0.1:{port}") as running:
        await post(running, b"{")
        async with httpx.AsyncClient(trust_env=False) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert (await client.post(f"http://127.0.0.1:{port}/metrics")).status_code == 405
    assert 'curfew_helper_requests_total{outcome="bad_json"} 1.0' in text
    assert 'curfew_helper_requests_total{outcome="ok"} 0.0' in text
    assert "curfew_helper_request_duration_seconds_bucket" in text
    assert "curfew_helper_requests_in_flight 0.0" in text


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "2002:a00:1::1",  # 6to4 around 10.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 around 169.254.169.254
        "::127.0.0.1",  # IPv4-compatible (deprecated) 127.0.0.1
        "::a00:1",
        "::ffff:0:a9fe:a9fe",  # SIIT IPv4-translated 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 (RFC 8215): a way into the helper's own IPv4 network
        "64:ff9b:1:808:8:800::",  # local-use NAT64, even around 8.8.8.8
    ],
)
def test_an_ipv6_form_carrying_a_private_ipv4_is_not_public(address: str) -> None:
    from probe.helper.guard import is_public

    assert not is_public(address)


def test_a_6to4_address_of_a_public_ipv4_stays_public() -> None:
    from probe.helper.guard import is_public

    assert is_public("2002:808:808::1")  # 6to4 of 8.8.8.8
    assert is_public("2001:4860:4860::8888")


def test_an_ipv6_client_is_its_64_for_the_limits() -> None:
    from probe.helper.guard import RateLimiter, client_key

    limiter = RateLimiter(rate=1.0, burst=1)
    first = client_key("2001:db8:1:2::1")
    assert limiter.allow(first, 0.0) == (True, False)
    # Another address in the same /64 shares the bucket; one in another /64 does not.
    assert limiter.allow(client_key("2001:db8:1:2:ffff::9"), 0.1) == (False, True)
    assert limiter.allow(client_key("2001:db8:1:3::1"), 0.1) == (True, False)


def test_the_rate_limiter_refills_and_keeps_a_bounded_table() -> None:
    from probe.helper.guard import RateLimiter

    limiter = RateLimiter(rate=2.0, burst=2, max_clients=100)
    assert [limiter.allow("a", 0.0)[0] for _ in range(3)] == [True, True, False]
    assert limiter.allow("a", 0.5) == (True, False)  # half a second at 2/s: one token back
    for i in range(1000):
        limiter.allow(f"client-{i}", 1.0 + i)
    assert len(limiter) <= 100


@pytest.mark.parametrize(
    "url", ["http://a..example/", "http://" + "a" * 64 + ".example/", "http://example.com/\u00fc"]
)
async def test_a_url_a_measurement_cannot_take_is_a_400_not_a_500(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: the URL passed the guard and then failed Target's validation, a 500 and a
    # traceback in the log for every such request (an empty or over-long label, non-ASCII).
    caplog.set_level(logging.WARNING, "probe.helper")
    async with helper(resolver="system") as running:
        resp = await post(running, dumps(THRequest(url)))
        assert resp.status_code == 400
        assert b"bad_url" in resp.content
        assert count(running, "error") == 0
    assert not [r for r in caplog.records if "helper-error" in r.getMessage()]
