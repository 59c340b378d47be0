"""The TLS layer after a chain that does not validate: when this machine cannot even reconnect
for the second, non-validating handshake, the observation is the machine's failure, not an
ssl_* one (which the analysis would judge tls_blocked)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from probe.clock import SYSTEM_CLOCK
from probe.lab.ca import LabCA
from probe.layers import tls
from probe.vantage import VantageNetwork, tls_contexts

HOST = "www.site.test"


@pytest.fixture
async def untrusted_server(tmp_path: Path) -> AsyncIterator[int]:
    context = LabCA(tmp_path).server_context("site", (HOST,))  # a root nobody trusts

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def network() -> VantageNetwork:
    validating, permissive = tls_contexts(None)
    return VantageNetwork("v", None, "system", None, None, None, None, validating, permissive)


@pytest.mark.parametrize(
    ("reconnect_failure", "expected"),
    [
        ("local_failure: emfile", "local_failure: emfile"),
        ("connection_refused", "ssl_unknown_authority"),  # the network's: the chain stays the story
    ],
)
async def test_a_failed_reconnect_names_whose_failure_it_was(
    untrusted_server: int, reconnect_failure: str, expected: str
) -> None:
    sock = socket.create_connection(("127.0.0.1", untrusted_server))
    sock.setblocking(False)

    async def reconnect() -> tuple[socket.socket | None, str | None]:
        return None, reconnect_failure

    obs, stream = await tls.handshake(
        sock, "127.0.0.1", untrusted_server, HOST, network(), 5.0, SYSTEM_CLOCK, 0.0, reconnect
    )
    assert stream is None
    assert obs.failure == expected
