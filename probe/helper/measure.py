"""What the helper does for one request, with curfew's own layers, as OONI's oohelperd does it.

1. resolve the URL's host from where the helper runs;
2. connect, and handshake with SNI = the host, to the union of its addresses and the probe's
   (`engine.measure(extra_addresses=...)`), skipping addresses the guard refuses;
3. GET the URL with the probe's User-Agent, following redirects (each hop measured again, each
   hop's addresses guarded again) up to `max_redirects`, as Go's HTTP client does for oohelperd;
4. answer with `th_response`: DNS, TCP and TLS of the URL's own host, HTTP of the final hop.

For an http:// URL without a port, the addresses are also handshaken with on 443 (as
oohelperd's ipinfo.go plans endpoints), so `ip_info` flag 8 can vouch for them.

Differences from oohelperd, on purpose or for now: no cookie jar across redirects; QUIC/HTTP3
are never measured (`quic_handshake` {} and `http3_request` null, as oohelperd answers when
QUIC is off); ASNs are 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final
from urllib.parse import urljoin, urlsplit

from probe import failures as F
from probe.clock import SYSTEM_CLOCK
from probe.config import ProbeSettings, Target
from probe.engine import measure
from probe.helper.control import split_endpoint, th_response
from probe.helper.guard import check_url
from probe.helper.protocol import THRequest, THResponse
from probe.layers import tcp, tls
from probe.model import HttpObservation, Measurement, TcpObservation, TlsObservation
from probe.vantage import VantageNetwork

REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
MIN_HOP_SECONDS: Final = 1.0
"""A redirect is not followed with less than this left of the request's deadline."""
MAX_USER_AGENT: Final = 512


def user_agent(request: THRequest, default: str) -> str:
    """The probe's User-Agent when it is a plain printable line, else `default`.

    >>> user_agent(THRequest("u", {"user-agent": ("Mozilla/5.0",)}), "curfew")
    'Mozilla/5.0'
    >>> user_agent(THRequest("u", {"User-Agent": ("evil\\r\\nX-Injected: 1",)}), "curfew")
    'curfew'
    """
    for name, values in request.http_request_headers.items():
        if name.lower() == "user-agent" and values:
            value = values[0]
            if 0 < len(value) <= MAX_USER_AGENT and value.isprintable() and value.isascii():
                return value
    return default


def probe_ips(request: THRequest) -> list[str]:
    """The IPs of the request's endpoints, in order, without repeats; other entries are ignored."""
    out: list[str] = []
    for endpoint in request.tcp_connect:
        split = split_endpoint(endpoint)
        if split is not None and split[0] not in out:
            out.append(split[0])
    return out


def _failed(url: str, failure: str) -> HttpObservation:
    return HttpObservation(url=url, address=None, t0=0.0, t=0.0, failure=failure)


def _why_no_http(m: Measurement) -> str:
    """The failure that stopped a hop before its GET."""
    if m.dns is not None and m.dns.failure is not None:
        return m.dns.failure
    if m.dns is not None and m.dns.answers and not m.tcp:
        return F.DNS_BOGON  # every address was refused by the guard
    if m.dns is not None and not m.dns.answers:
        return F.DNS_NO_ANSWER
    if m.tcp and all(o.failure is not None for o in m.tcp):
        return m.tcp[0].failure or F.GENERIC_TIMEOUT
    if m.tls:
        return next((o.failure for o in m.tls if o.failure is not None), F.SSL_FAILED_HANDSHAKE)
    if not m.tcp:
        return F.DNS_BOGON
    return F.HTTP_REQUEST_FAILED


async def _follow(
    first: Measurement,
    url: str,
    net: VantageNetwork,
    first_settings: ProbeSettings,
    allow_address: Callable[[str], bool] | None,
    max_redirects: int,
    deadline: float,
    start: float,
    monotonic: Callable[[], float],
) -> HttpObservation:
    """The final HTTP observation: `first`'s, or the last redirect hop's (each hop measured anew)."""
    http = first.http if first.http is not None else _failed(url, _why_no_http(first))
    hops = 0
    while http.failure is None and http.status in REDIRECTS:
        location = http.header("location")
        if not location:
            break  # a redirect status without a place to go is the final response
        if hops >= max_redirects:
            http = _failed(url, f"unknown_failure: stopped after {max_redirects} redirects")
            break
        url = urljoin(url, location.strip())
        refusal = _redirect_refusal(url, allow_address)
        if refusal is not None:
            http = _failed(url, f"unknown_failure: redirect refused ({refusal})")
            break
        left = deadline - (monotonic() - start)
        if left < MIN_HOP_SECONDS:
            http = _failed(url, F.GENERIC_TIMEOUT)
            break
        hop = await measure(
            Target(name="helper", url=url), net, _within(first_settings, left), allow_address=allow_address
        )
        http = hop.http if hop.http is not None else _failed(url, _why_no_http(hop))
        hops += 1
    return http


async def helper_measurement(
    request: THRequest,
    net: VantageNetwork,
    settings: ProbeSettings,
    *,
    allow_address: Callable[[str], bool] | None,
    max_redirects: int,
    deadline: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> Measurement:
    """The helper's measurement of `request`: first hop's DNS/TCP/TLS, final hop's HTTP.

    For an http:// URL without a port, the addresses are also handshaken with on 443 (OONI's
    extension E001), so a valid chain can vouch for them (`ip_info` flag 8); those observations
    are on port 443 beside the port-80 ones. `deadline` is seconds for the whole, redirects
    included. Never raises on a network failure.
    """
    start = monotonic()
    ua = user_agent(request, settings.user_agent)
    first_settings = _within(settings.model_copy(update={"user_agent": ua}), deadline)
    url = request.http_request
    first = await measure(
        Target(name="helper", url=url),
        net,
        first_settings,
        extra_addresses=probe_ips(request),
        allow_address=allow_address,
    )
    parts = urlsplit(url)
    validation = None
    if parts.scheme == "http" and parts.port is None and first.tcp:
        addresses = list(dict.fromkeys(o.address for o in first.tcp))
        host = parts.hostname or ""
        validation = asyncio.ensure_future(_handshakes_on_443(host, addresses, net, first_settings))
    try:
        http = await _follow(
            first, url, net, first_settings, allow_address, max_redirects, deadline, start, monotonic
        )
        extra_tcp: tuple[TcpObservation, ...] = ()
        extra_tls: tuple[TlsObservation, ...] = ()
        if validation is not None:
            left = max(0.0, deadline - (monotonic() - start))
            with contextlib.suppress(TimeoutError):
                extra_tcp, extra_tls = await asyncio.wait_for(asyncio.shield(validation), left)
    finally:
        if validation is not None and not validation.done():
            validation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validation
    return replace(
        first, http=http, tcp=first.tcp + extra_tcp, tls=first.tls + extra_tls, runtime=monotonic() - start
    )


async def _handshakes_on_443(
    host: str, addresses: list[str], net: VantageNetwork, settings: ProbeSettings
) -> tuple[tuple[TcpObservation, ...], tuple[TlsObservation, ...]]:
    """TCP and a validating TLS handshake (SNI = `host`) on port 443 of each address."""
    clock = SYSTEM_CLOCK
    origin = clock.monotonic()
    timeouts = settings.timeouts

    async def no_retry() -> tuple[socket.socket | None, str | None]:
        return None, None  # only validity matters here: an invalid chain is not fetched again

    async def one(address: str) -> tuple[TcpObservation, TlsObservation | None]:
        tcp_obs, sock = await tcp.connect(address, 443, net, timeouts.tcp_connect, clock, origin)
        if sock is None:
            return tcp_obs, None
        tls_obs, stream = await tls.handshake(
            sock, address, 443, host, net, timeouts.tls_handshake, clock, origin, no_retry
        )
        if stream is not None:
            stream.close()
        return tcp_obs, tls_obs

    results = await asyncio.gather(*(one(a) for a in addresses))
    return tuple(t for t, _ in results), tuple(h for _, h in results if h is not None)


def _redirect_refusal(url: str, allow_address: Callable[[str], bool] | None) -> str | None:
    """Why a redirect's URL is not followed: not http(s), or an IP host the guard refuses.

    A name is followed: its addresses meet `allow_address` once resolved, like the first hop's.
    """
    refusal = check_url(url, allow_private=True)
    if refusal is not None:
        return refusal[0]
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    if allow_address is not None and not allow_address(host):
        return "private_target"
    return None


def _within(settings: ProbeSettings, seconds: float) -> ProbeSettings:
    """`settings` with the probe's total deadline no longer than `seconds`."""
    if settings.timeouts.total <= seconds:
        return settings
    timeouts = settings.timeouts.model_copy(update={"total": max(0.1, seconds)})
    return settings.model_copy(update={"timeouts": timeouts})


async def answer(
    request: THRequest,
    net: VantageNetwork,
    settings: ProbeSettings,
    *,
    allow_address: Callable[[str], bool] | None,
    max_redirects: int,
    deadline: float,
) -> THResponse:
    """The THResponse for `request` (see `helper_measurement`)."""
    m = await helper_measurement(
        request,
        net,
        settings,
        allow_address=allow_address,
        max_redirects=max_redirects,
        deadline=deadline,
    )
    return th_response(m, request.tcp_connect)
