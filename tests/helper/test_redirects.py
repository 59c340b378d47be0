"""The helper follows redirects as OONI's does: to the final page, capped, and guarded at every hop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from probe.helper.control import th_response
from probe.helper.measure import helper_measurement
from probe.helper.protocol import THRequest, THResponse
from probe.helper.server import helper_network
from probe.helper.settings import HelperFile

A, B, FORBIDDEN = "127.0.4.21", "127.0.4.22", "127.0.4.23"


def page(location: str | None) -> bytes:
    if location is None:
        body = b"<html><head><title>Final Page</title></head><body>hello</body></html>"
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
    return (
        b"HTTP/1.1 302 Found\r\nLocation: %b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        % location.encode()
    )


@asynccontextmanager
async def site(address: str, location: str | None, port: int = 0) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(page(location))
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, address, port)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def run(url: str, allow: Callable[[str], bool] | None = None, max_redirects: int = 10) -> THResponse:
    settings = HelperFile.model_validate({"probe": {"timeouts": {"total": 5}}})
    m = await helper_measurement(
        THRequest(url),
        helper_network(settings),
        settings.probe,
        allow_address=allow,
        max_redirects=max_redirects,
        deadline=10.0,
    )
    return th_response(m)


async def test_a_redirect_is_followed_to_the_final_page() -> None:
    async with site(B, None) as b_port, site(A, f"http://{B}:{b_port}/final") as a_port:
        answer = await run(f"http://{A}:{a_port}/")
    http = answer.http_request
    assert (http.status_code, http.title, http.failure) == (200, "Final Page", None)
    # DNS/TCP describe the URL the probe asked about, not the hop.
    assert list(answer.tcp_connect) == [f"{A}:{a_port}"]


async def test_a_relative_redirect_is_resolved_against_the_url() -> None:
    async with site(A, None) as port, site(B, f"http://{A}:{port}/") as b_port:
        answer = await run(f"http://{B}:{b_port}/start")
    assert answer.http_request.title == "Final Page"


async def test_a_redirect_loop_stops_at_the_cap() -> None:
    async with site(A, "/again") as port:
        answer = await run(f"http://{A}:{port}/", max_redirects=3)
    http = answer.http_request
    assert (http.status_code, http.failure) == (-1, "unknown_error")


async def test_a_redirect_to_a_forbidden_address_is_not_followed() -> None:
    async with site(FORBIDDEN, None) as f_port, site(A, f"http://{FORBIDDEN}:{f_port}/secret") as port:
        answer = await run(f"http://{A}:{port}/", allow=lambda address: address != FORBIDDEN)
    http = answer.http_request
    assert (http.status_code, http.failure, http.title) == (-1, "unknown_error", "")


async def test_a_redirect_to_another_scheme_is_not_followed() -> None:
    async with site(A, "file:///etc/passwd") as port:
        answer = await run(f"http://{A}:{port}/")
    assert answer.http_request.failure == "unknown_error"


async def test_a_redirect_to_a_host_no_measurement_can_take_is_a_failure_not_a_crash() -> None:
    # Before: the hop's Target refused the URL and helper_measurement raised (a 500).
    async with site(A, "http://a..example/") as port:
        answer = await run(f"http://{A}:{port}/")
    assert answer.http_request.failure == "unknown_error"
