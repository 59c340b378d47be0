"""A lost UDP datagram is retransmitted like a stub resolver does; a censor's silence still times out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import dns.message
import dns.rrset

from probe.clock import SYSTEM_CLOCK
from probe.config import parse_config
from probe.layers.dns import resolve
from probe.vantage import vantage_network


class Flaky(asyncio.DatagramProtocol):
    """Answers A queries with 127.0.5.5, ignoring the first `drop` datagrams."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        self.seen = 0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        if self.seen <= self.drop:
            return
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        if query.question[0].rdtype == 1:
            reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "127.0.5.5"))
        self.transport.sendto(reply.to_wire(), addr)


async def lookup(drop: int, timeout: float = 1.5) -> tuple[object, float]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Flaky(drop), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    config = parse_config(
        {
            "vantages": [{"name": "v", "resolver": f"127.0.0.1:{port}"}],
            "targets": [{"name": "t", "url": "https://t.lab/"}],
        }
    )
    try:
        start = time.monotonic()
        obs = await resolve(
            "t.lab", vantage_network(config.vantages[0], config), timeout, SYSTEM_CLOCK, start
        )
        return obs, time.monotonic() - start
    finally:
        transport.close()


async def test_one_lost_query_is_retransmitted() -> None:
    obs, elapsed = await lookup(drop=1)
    assert obs.failure is None  # type: ignore[attr-defined]
    assert obs.answers == ("127.0.5.5",)  # type: ignore[attr-defined]
    assert elapsed < 1.5


async def test_a_server_that_never_answers_still_times_out_within_the_deadline() -> None:
    obs, elapsed = await lookup(drop=10_000, timeout=0.6)
    assert obs.failure == "generic_timeout_error"  # type: ignore[attr-defined]
    assert elapsed < 1.0
