"""For an http:// URL without a port the helper also handshakes on 443, as oohelperd does, so a
valid chain vouches for an address of a plain-HTTP site (ip_info flag 8).

Needs ports 80 and 443 on loopback addresses, hence root (the sandbox and CI run as root)."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import trustme

from probe.helper.control import control_measurement, th_response
from probe.helper.measure import helper_measurement
from probe.helper.protocol import FLAG_RESOLVED_BY_PROBE, FLAG_VALID_FOR_DOMAIN, THRequest
from probe.helper.server import helper_network
from probe.helper.settings import HelperFile

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds ports 80 and 443")

GOOD, WRONG = "127.0.4.31", "127.0.4.32"  # WRONG's certificate names another address


async def page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<title>Plain</title>"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def servers(ca: trustme.CA) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for address, name in ((GOOD, GOOD), (WRONG, "127.0.4.99")):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(name).configure_cert(ctx)
            for port, tls in ((80, None), (443, ctx)):
                srv = await asyncio.start_server(page, address, port, ssl=tls)
                stack.push_async_callback(srv.wait_closed)
                stack.callback(srv.close)
        yield


async def test_a_plain_http_sites_addresses_are_validated_on_443(tmp_path: Path) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    settings = HelperFile.model_validate(
        {"tls": {"ca_bundle": str(bundle)}, "probe": {"timeouts": {"total": 5}}}
    )
    request = THRequest(f"http://{GOOD}/", {}, (f"{WRONG}:80",))
    async with servers(ca):
        m = await helper_measurement(
            request,
            helper_network(settings),
            settings.probe,
            allow_address=None,
            max_redirects=0,
            deadline=10,
        )
    answer = th_response(m, request.tcp_connect)
    assert answer.http_request.status_code == 200 and answer.http_request.title == "Plain"
    assert {k: v.status for k, v in answer.tcp_connect.items()} == {
        f"{GOOD}:80": True,
        f"{WRONG}:80": True,
        f"{GOOD}:443": True,
        f"{WRONG}:443": True,
    }
    assert answer.tls_handshake[f"{GOOD}:443"].status is True
    assert answer.tls_handshake[f"{WRONG}:443"].failure == "ssl_invalid_hostname"
    assert answer.ip_info[GOOD].flags & FLAG_VALID_FOR_DOMAIN
    assert answer.ip_info[WRONG].flags & FLAG_RESOLVED_BY_PROBE
    assert not answer.ip_info[WRONG].flags & FLAG_VALID_FOR_DOMAIN
    assert answer.valid_addresses() == frozenset({GOOD})
    # The control built from it keeps the fetch path only: port 80, no TLS.
    control = control_measurement(answer, request.http_request)
    assert {o.port for o in control.tcp} == {80} and control.tls == ()


async def test_an_explicit_port_means_no_extra_handshake(tmp_path: Path) -> None:
    ca = trustme.CA()
    settings = HelperFile.model_validate({"probe": {"timeouts": {"total": 5}}})
    async with servers(ca):
        m = await helper_measurement(
            THRequest(f"http://{GOOD}:80/"),
            helper_network(settings),
            settings.probe,
            allow_address=None,
            max_redirects=0,
            deadline=10,
        )
    assert [(o.address, o.port) for o in m.tcp] == [(GOOD, 80)] and m.tls == ()
