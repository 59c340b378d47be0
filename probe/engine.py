"""The layered probe of one (vantage, target): DNS, TCP to every address, TLS, HTTP, throughput.

Each step gets the smaller of its own deadline and what is left of the probe's total
deadline, so a probe never outlives `timeouts.total` (plus scheduling noise).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from probe import failures
from probe.clock import SYSTEM_CLOCK, Clock
from probe.config import ProbeSettings, Target
from probe.layers import dns, http, tcp, tls
from probe.layers.stream import PlainStream, Stream
from probe.model import (
    DnsObservation,
    HttpObservation,
    Measurement,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
)
from probe.vantage import VantageNetwork

# Failures after which the idle-connection check tells an address block from a content block.
_RESET_LIKE = (failures.CONNECTION_RESET, failures.EOF_ERROR)


class _Budget:
    """What is left of the probe's total deadline."""

    def __init__(self, clock: Clock, total: float) -> None:
        self.clock = clock
        self.origin = clock.monotonic()
        self.total = total
        self.hit = False

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.origin

    def step(self, limit: float) -> float:
        remaining = self.total - self.elapsed()
        if remaining <= limit:
            self.hit = True
        return max(0.001, min(limit, remaining))


def _split(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, host, port


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, net: VantageNetwork, budget: _Budget, limit: float) -> DnsObservation | None:
    if net.proxy is not None:
        t = budget.elapsed()
        label = net.proxy_label or "proxy"
        return DnsObservation(query=host, resolver=label, engine="proxy", t0=t, t=t)
    if _literal(host):
        return None
    return await dns.resolve(host, net, budget.step(limit), budget.clock, budget.origin)


def _addresses(host: str, obs: DnsObservation | None, net: VantageNetwork, limit: int) -> list[str]:
    if net.proxy is not None or obs is None:
        return [host]
    return list(obs.answers[:limit])


MAX_EXTRA_ADDRESSES = 16
"""At most this many addresses from elsewhere are measured on top of the resolved ones."""


def _union(addresses: list[str], extra: Sequence[str]) -> list[str]:
    """`addresses` then the IPs of `extra` not already there, at most MAX_EXTRA_ADDRESSES of them.

    >>> _union(["192.0.2.1"], ["192.0.2.1", "192.0.2.2", "not-an-ip", "::1"])
    ['192.0.2.1', '192.0.2.2', '::1']
    """
    seen = set(addresses)
    out = list(addresses)
    added = 0
    for item in extra:
        try:
            address = str(ipaddress.ip_address(item))
        except ValueError:
            continue  # a name or garbage: only addresses are connected to directly
        if address in seen:
            continue
        seen.add(address)
        out.append(address)
        added += 1
        if added >= MAX_EXTRA_ADDRESSES:
            break
    return out


class _Connection:
    """One address's TCP (and TLS) attempt."""

    def __init__(self, tcp_obs: TcpObservation) -> None:
        self.tcp = tcp_obs
        self.tls: TlsObservation | None = None
        self.stream: Stream | None = None


async def _connect(
    address: str,
    port: int,
    scheme: str,
    server_name: str,
    net: VantageNetwork,
    settings: ProbeSettings,
    budget: _Budget,
) -> _Connection:
    timeouts = settings.timeouts
    tcp_obs, sock = await tcp.connect(
        address, port, net, budget.step(timeouts.tcp_connect), budget.clock, budget.origin
    )
    conn = _Connection(tcp_obs)
    if sock is None:
        return conn
    if scheme != "https":
        conn.stream = PlainStream(sock)
        return conn

    async def reconnect() -> tuple[socket.socket | None, str | None]:
        obs, fresh = await tcp.connect(
            address, port, net, budget.step(timeouts.tcp_connect), budget.clock, budget.origin
        )
        return fresh, obs.failure

    conn.tls, conn.stream = await tls.handshake(
        sock,
        address,
        port,
        server_name,
        net,
        budget.step(timeouts.tls_handshake),
        budget.clock,
        budget.origin,
        reconnect,
    )
    return conn


async def _idle_reset(
    conn: _Connection, net: VantageNetwork, settings: ProbeSettings, budget: _Budget
) -> None:
    wait = min(settings.idle_reset_wait, max(0.0, budget.total - budget.elapsed() - 0.5))
    if wait <= 0:
        return
    verdict = await tcp.idle_reset(conn.tcp.address, conn.tcp.port, net, wait)
    conn.tcp = replace(conn.tcp, idle_reset=verdict)


async def measure(
    target: Target,
    net: VantageNetwork,
    settings: ProbeSettings,
    clock: Clock = SYSTEM_CLOCK,
    extra_addresses: Sequence[str] = (),
    allow_address: Callable[[str], bool] | None = None,
    on_resolved: Callable[[DnsObservation | None], None] | None = None,
) -> Measurement:
    """Probe `target` from the vantage behind `net`; never raises on a network failure.

    `extra_addresses`: IPs resolved elsewhere (a probe asking a helper, another vantage) that
    are connected and handshaken to as well as the ones resolved here, deduplicated and at
    most MAX_EXTRA_ADDRESSES of them; the HTTP fetch prefers the addresses resolved here.
    `allow_address`: when given, only addresses it accepts are connected to (the helper refuses
    private ones); checked on the addresses as resolved, so a rebinding name cannot slip by.
    `on_resolved`: called with the DNS observation as soon as name resolution is done, before
    any connection (the daemon asks a test helper for the control from there, in parallel).
    """
    started_at = clock.now()
    budget = _Budget(clock, settings.timeouts.total)
    scheme, host, port = _split(target.url)
    dns_obs = await _resolve(host, net, budget, settings.timeouts.dns)
    if on_resolved is not None:
        on_resolved(dns_obs)
    conns: list[_Connection] = []
    http_obs: HttpObservation | None = None
    throughput: ThroughputObservation | None = None
    addresses = _addresses(host, dns_obs, net, settings.max_addresses)
    if extra_addresses:
        addresses = _union(addresses, extra_addresses)
    if allow_address is not None:
        addresses = [a for a in addresses if allow_address(a)]
    try:
        if len(addresses) == 1:  # the common case: no task to wrap one coroutine
            conns = [await _connect(addresses[0], port, scheme, host, net, settings, budget)]
        elif addresses:
            conns = list(
                await asyncio.gather(
                    *(_connect(a, port, scheme, host, net, settings, budget) for a in addresses)
                )
            )
        chosen = next((c for c in conns if c.stream is not None), None)
        if chosen is not None and chosen.stream is not None:
            http_obs = await http.fetch(
                chosen.stream,
                target.url,
                chosen.tcp.address,
                settings.user_agent,
                settings.max_body_bytes,
                budget.step(settings.timeouts.http_request),
                clock,
                budget.origin,
            )
            chosen.stream.close()
            chosen.stream = None
            if http_obs.failure in _RESET_LIKE:
                await _idle_reset(chosen, net, settings, budget)
        else:
            reset = [c for c in conns if c.tls is not None and c.tls.failure in _RESET_LIKE]
            if reset and len(reset) == len(conns):
                await _idle_reset(reset[0], net, settings, budget)
        if target.throughput_url and http_obs is not None and http_obs.failure is None:
            throughput = await _throughput(target.throughput_url, host, dns_obs, net, settings, budget)
    finally:
        for conn in conns:
            if conn.stream is not None:
                conn.stream.close()
    return Measurement(
        vantage=net.name,
        target=target.name,
        url=target.url,
        started_at=started_at,
        runtime=budget.elapsed(),
        dns=dns_obs,
        tcp=tuple(c.tcp for c in conns),
        tls=tuple(c.tls for c in conns if c.tls is not None),
        http=http_obs,
        throughput=throughput,
        proxy=net.proxy_label,
        deadline_hit=budget.hit and budget.elapsed() >= budget.total,
        labels=dict(target.labels),
    )


async def _throughput(
    url: str,
    main_host: str,
    main_dns: DnsObservation | None,
    net: VantageNetwork,
    settings: ProbeSettings,
    budget: _Budget,
) -> ThroughputObservation:
    """Download a bulk object on a fresh connection, sampling bytes over time."""
    clock = budget.clock
    t0 = budget.elapsed()
    limit = settings.timeouts.throughput

    def failed(failure: str | None) -> ThroughputObservation:
        return ThroughputObservation(url=url, t0=t0, t=budget.elapsed(), failure=failure)

    scheme, host, port = _split(url)
    dns_obs = main_dns if host == main_host else await _resolve(host, net, budget, settings.timeouts.dns)
    if dns_obs is not None and dns_obs.failure is not None:
        return failed(dns_obs.failure)
    addresses = _addresses(host, dns_obs, net, 1)
    if not addresses:
        return failed(failures.DNS_NO_ANSWER)
    conn = await _connect(addresses[0], port, scheme, host, net, settings, budget)
    if conn.stream is None:
        return failed(conn.tls.failure if conn.tls is not None else conn.tcp.failure)
    start = budget.elapsed()
    try:
        result = await http.download(
            conn.stream,
            url,
            settings.user_agent,
            settings.throughput_max_bytes,
            min(settings.throughput_max_seconds, budget.step(limit)),
            settings.throughput_sample_interval,
            clock,
        )
    finally:
        conn.stream.close()
    # The rate is measured from the request on, so the handshake does not dilute it.
    return ThroughputObservation(
        url=url,
        t0=start,
        t=budget.elapsed(),
        failure=result.failure,
        bytes=result.bytes,
        samples=tuple(result.samples),
        complete=result.complete,
    )
