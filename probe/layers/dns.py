"""DNS layer: resolve a name (A and AAAA) the way the vantage is told to.

The only module that sends DNS queries. Returns a `DnsObservation`; never raises on a
network failure.
"""

from __future__ import annotations

import asyncio
import socket

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from probe import failures
from probe.clock import Clock
from probe.model import DnsObservation
from probe.vantage import VantageNetwork


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
        outcomes.append(failures.classify_rcode(dns.rcode.to_text(reply.rcode())))
        for rrset in reply.answer:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                addresses.extend(rdata.address for rdata in rrset)
    if addresses:
        return tuple(dict.fromkeys(addresses)), None
    # No address: report the A query's failure first, as that is what a browser hits first.
    for outcome in outcomes:
        if outcome is not None:
            return (), outcome
    return (), failures.DNS_NO_ANSWER


async def _query(
    name: str, rdtype: dns.rdatatype.RdataType, net: VantageNetwork, timeout: float
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if net.resolver_kind == "doh":
        return await dns.asyncquery.https(
            query, str(net.resolver_host), timeout=timeout, source=net.source_address
        )
    reply, _ = await dns.asyncquery.udp_with_fallback(
        query,
        str(net.resolver_host),
        timeout=timeout,
        port=net.resolver_port or 53,
        source=net.source_address,
    )
    return reply
