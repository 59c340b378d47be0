"""What the helper does for one request, with curfew's own layers, as OONI's oohelperd does it.

1. resolve the URL's host from where the helper runs;
2. connect, and handshake with SNI = the host, to the union of its addresses and the probe's
   (`engine.measure(extra_addresses=...)`), skipping addresses the guard refuses;
3. GET the URL with the probe's User-Agent, following redirects (each hop measured again, each
   hop's addresses guarded again) up to `max_redirects`, as Go's HTTP client does for oohelperd;
4. answer with `th_response`: DNS, TCP and TLS of the URL's own host, HTTP of the final hop.

Differences from oohelperd, on purpose or for now: no cookie jar across redirects; QUIC/HTTP3
are never measured (`quic_handshake` {} and `http3_request` null, as oohelperd answers when
QUIC is off); for an http:// URL no extra TLS handshake on port 443 (so `ip_info` flag 8
comes only from https:// URLs); ASNs are 0.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final
from urllib.parse import urljoin, urlsplit

from probe import failures as F
from probe.config import ProbeSettings, Target
from probe.engine import measure
from probe.helper.control import split_endpoint, th_response
from probe.helper.guard import check_url
from probe.helper.protocol import THRequest, THResponse
from probe.model import HttpObservation, Measurement
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

    `deadline` is seconds for the whole, redirects included. Never raises on a network failure.
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
    return replace(first, http=http, runtime=monotonic() - start)


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
