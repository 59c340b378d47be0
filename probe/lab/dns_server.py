"""The lab's authoritative DNS server (UDP and TCP) with per-vantage censorship.

Names the scenario serves get an A record with the target's address (or its geo address for
that vantage); AAAA gets NOERROR with no answer; unknown names get NXDOMAIN. The first
active rule for (client vantage, name) may replace the answer: dns_nxdomain, dns_servfail,
dns_refused, dns_bogus (an A record with the rule's address), dns_timeout and blackhole
(no reply at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from probe.lab.loss import NO_LOSS, Loss
from probe.lab.rules import Policy

log = logging.getLogger(__name__)
TTL = 60


def answer(policy: Policy, now: dt.datetime, source: str, wire: bytes) -> bytes | None:
    """The response to query `wire` from `source` at `now`, or None for no reply."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # dnspython raises many types for garbage; a server just ignores it
        return None
    if not query.question:
        return None
    question = query.question[0]
    qname = question.name.to_text(omit_final_dot=True).lower()
    scenario = policy.scenario
    vantage = scenario.vantage_at(source)
    target = scenario.target_for_host(qname)
    decision = policy.decide(now, vantage, target, qname)
    action = decision.action
    if action in ("dns_timeout", "blackhole"):
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if action == "dns_nxdomain" or (target is None and action != "dns_bogus"):
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif action == "dns_servfail":
        response.set_rcode(dns.rcode.SERVFAIL)
    elif action == "dns_refused":
        response.set_rcode(dns.rcode.REFUSED)
    elif question.rdtype == dns.rdatatype.A and question.rdclass == dns.rdataclass.IN:
        if action == "dns_bogus" and decision.rule is not None:
            address = decision.rule.bogus_address
        else:
            assert target is not None
            address = target.geo.get(vantage.name, target.address) if vantage else target.address
        response.answer.append(dns.rrset.from_text(question.name, TTL, "IN", "A", address))
    return response.to_wire()


class DnsServer:
    """UDP and TCP listeners on one host:port (port 0: the same free port for both)."""

    def __init__(
        self, policy: Policy, now: Callable[[], dt.datetime], host: str, port: int, loss: Loss = NO_LOSS
    ) -> None:
        self.policy = policy
        self.loss = loss
        self.now = now
        self.host = host
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._held: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._handle_tcp, self.host, port)
            except OSError:
                transport.close()
                if self.port != 0 or attempt == 19:
                    raise
                continue
            self._udp = transport
            self.port = port
            return

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._held):
            task.cancel()
        if self._tcp is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)

    def _reply_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(self.policy, self.now(), addr[0], data)
        if reply is not None and self._udp is not None and not self.loss.drop():
            self._udp.sendto(reply, addr)

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = writer.get_extra_info("peername")[0]
        task = asyncio.current_task()
        assert task is not None
        self._held.add(task)
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                reply = answer(self.policy, self.now(), source, await reader.readexactly(length))
                if reply is None or self.loss.drop():
                    await reader.read()  # say nothing; hold until the client gives up
                    return
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._held.discard(task)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            self.server._reply_udp(data, (str(addr[0]), addr[1]))
        except Exception:  # never let one bad query stop the server
            log.exception("lab DNS: failed to answer a query")
