"""DNS layer: resolve a name (A and AAAA) the way the vantage is told to.

The only module that sends DNS queries. Returns a `DnsObservation`; never raises on a
network failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
import socket
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from probe import failures
from probe.clock import Clock
from probe.model import DnsObservation
from probe.vantage import VantageNetwork

DOH_TYPE = "application/dns-message"


async def resolve(
    name: str, net: VantageNetwork, timeout: float, clock: Clock, origin: float
) -> DnsObservation:
    """Resolve `name` at the vantage; `origin` is the measurement's monotonic start."""
    t0 = clock.monotonic() - origin
    answers: tuple[str, ...] = ()
    failure: str | None
    try:
        async with asyncio.timeout(timeout):
            if net.resolver_kind == "system":
                answers, failure = await _system(name)
            else:
                answers, failure = await _dnspython(name, net, timeout)
    except TimeoutError:
        failure = failures.GENERIC_TIMEOUT
    except (OSError, dns.exception.DNSException) as exc:
        failure = failures.classify(exc)
    engine = "system" if net.resolver_kind == "system" else net.resolver_kind
    return DnsObservation(
        query=name,
        resolver=net.resolver_label,
        engine=engine,  # type: ignore[arg-type]
        t0=t0,
        t=clock.monotonic() - origin,
        answers=answers,
        failure=failure,
    )


async def _system(name: str) -> tuple[tuple[str, ...], str | None]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return (), failures.classify_gai(exc.errno or 0)
    ordered = dict.fromkeys(str(info[4][0]) for info in infos)
    return tuple(ordered), (None if ordered else failures.DNS_NO_ANSWER)


async def _dnspython(name: str, net: VantageNetwork, timeout: float) -> tuple[tuple[str, ...], str | None]:
    replies = await asyncio.gather(
        _query(name, dns.rdatatype.A, net, timeout),
        _query(name, dns.rdatatype.AAAA, net, timeout),
        return_exceptions=True,
    )
    addresses: list[str] = []
    outcomes: list[str | None] = []
    for reply in replies:
        if isinstance(reply, BaseException):
            if not isinstance(reply, Exception):
                raise reply
            outcomes.append(failures.classify(reply))
            continue
        outcomes.append(failures.classify_rcode(reply.rcode))
        addresses.extend(reply.addresses)
    if addresses:
        return tuple(dict.fromkeys(addresses)), None
    # No address: report the A query's failure first, as that is what a browser hits first.
    for outcome in outcomes:
        if outcome is not None:
            return (), outcome
    return (), failures.DNS_NO_ANSWER


@dataclass(frozen=True)
class Reply:
    """What a resolution takes from a DNS reply: its rcode and its A/AAAA addresses."""

    rcode: str
    """As `dns.rcode.to_text` gives it ("NOERROR", "NXDOMAIN", ...)."""
    addresses: tuple[str, ...]

    @classmethod
    def of(cls, message: dns.message.Message) -> Reply:
        addresses = [
            rdata.address
            for rrset in message.answer
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for rdata in rrset
        ]
        return cls(dns.rcode.to_text(message.rcode()), tuple(addresses))


async def _query(name: str, rdtype: dns.rdatatype.RdataType, net: VantageNetwork, timeout: float) -> Reply:
    if net.resolver_kind == "doh":
        return Reply.of(await _doh(dns.message.make_query(name, rdtype), net, timeout))
    query, wire = _fresh_query(name, rdtype)
    try:
        return await _udp(query, wire, net, timeout)
    except dns.message.Truncated:
        reply = await dns.asyncquery.tcp(
            query,
            str(net.resolver_host),
            timeout=timeout,
            port=net.resolver_port or 53,
            source=net.source_address,
        )
        return Reply.of(reply)


@lru_cache(maxsize=1024)
def _template(name: str, rdtype: dns.rdatatype.RdataType) -> tuple[dns.message.Message, bytes]:
    query = dns.message.make_query(name, rdtype)
    return query, query.to_wire()


def _fresh_query(name: str, rdtype: dns.rdatatype.RdataType) -> tuple[dns.message.Message, bytes]:
    """The query for (name, type) with a new random ID, as a message and on the wire.

    Building and rendering a query with dnspython costs more than the rest of the DNS
    step, and only the ID changes from one probe to the next, so the wire form is built
    once per name and the ID patched in.
    """
    template, wire = _template(name, rdtype)
    query = copy.copy(template)  # shares the (never mutated) sections
    query.id = secrets.randbits(16)
    return query, query.id.to_bytes(2, "big") + wire[2:]


UDP_TRIES = 3
"""Send a UDP query up to this many times within the step's deadline, like a stub resolver
(resolv.conf's `attempts`): one lost datagram is the network's noise, not a censor's silence.
A censor that drops the query drops the retries too, so a dns_timeout block still times out."""


async def _udp(query: dns.message.Message, wire: bytes, net: VantageNetwork, timeout: float) -> Reply:
    """What dnspython's `udp_with_fallback` does over UDP, on a connected socket, retransmitting
    the same query every timeout/UDP_TRIES seconds until a reply comes.

    Raises `dns.message.Truncated` (the caller retries over TCP), `dns.query.BadResponse`
    for a reply to some other question, `OSError` or a parse error.
    """
    host = str(net.resolver_host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    loop = asyncio.get_running_loop()
    with net.sockets(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        if net.source_address is not None:
            sock.bind((net.source_address, 0))
        sock.connect((host, net.resolver_port or 53))  # replies from elsewhere never reach us
        for attempt in range(UDP_TRIES):
            await loop.sock_sendall(sock, wire)
            try:
                async with asyncio.timeout(None if attempt == UDP_TRIES - 1 else timeout / UDP_TRIES):
                    data = await loop.sock_recv(sock, 65535)
                break
            except TimeoutError:
                continue  # the caller's deadline bounds the last attempt
    return read_reply(query, wire, data)


REPLIES_KEPT = 1024
"""Replies `read_reply` remembers."""
REPLY_KEPT_BYTES = 1232
"""The largest reply remembered (DNS Flag Day 2020's UDP size; an answer to a plain query is
at most 512 bytes): a resolver that sends 64 KB datagrams cannot make the memory grow past
~1.3 MB."""
_replies: OrderedDict[tuple[bytes, bytes], Reply] = OrderedDict()


def read_reply(query: dns.message.Message, wire: bytes, data: bytes) -> Reply:
    """The reply `data` to `query` (sent as `wire`), parsed and checked the way dnspython's
    `udp` does (`from_wire`, then `is_response`).

    Raises `dns.message.Truncated`, `dns.query.BadResponse` for a reply to some other
    question (or with another ID), or a parse error.

    A resolver gives the same answer again and again; parsing it costs ~55 us, a quarter of
    the DNS step. So a reply is remembered by its bytes and its question's, all but the
    2-byte ID: `is_response` depends on those and on the IDs being equal, which is checked
    every time. Only replies that passed, and of at most `REPLY_KEPT_BYTES`, are remembered.
    """
    key = (wire[2:], data[2:])
    known = _replies.get(key)
    if known is not None:
        if data[:2] != wire[:2]:
            raise dns.query.BadResponse
        return known
    message = dns.message.from_wire(data, raise_on_truncation=True)
    if not query.is_response(message):
        raise dns.query.BadResponse
    reply = Reply.of(message)
    if len(data) <= REPLY_KEPT_BYTES:
        if len(_replies) >= REPLIES_KEPT:
            with contextlib.suppress(KeyError):  # another thread emptied it first
                _replies.popitem(last=False)  # the oldest, in one step
        _replies[key] = reply
    return reply


async def _doh(query: dns.message.Message, net: VantageNetwork, timeout: float) -> dns.message.Message:
    """RFC 8484 POST with httpx, bound to the vantage's source address, verified against its trust store."""
    import httpx  # only here: ~1 MB and ~25 ms of imports that a daemon without DoH never needs

    query.id = 0  # RFC 8484 4.1: cache-friendly
    transport = httpx.AsyncHTTPTransport(local_address=net.source_address, verify=net.validating, retries=0)
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        response = await client.post(
            str(net.resolver_host),
            content=query.to_wire(),
            headers={"Content-Type": DOH_TYPE, "Accept": DOH_TYPE},
        )
    if response.status_code != 200:
        raise DohError(f"DoH server answered HTTP {response.status_code}")
    return dns.message.from_wire(response.content)


class DohError(Exception):
    """A DoH server that answered, but not with a DNS message."""
