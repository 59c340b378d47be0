"""What the helper refuses before it connects anywhere: pure checks, no I/O.

The helper connects where strangers ask, so it must not become a way into the network it
runs in (SSRF): targets on loopback, private, link-local and other bogon addresses are refused
unless the operator allowed them (the lab). Addresses are checked as the helper resolved
them, right before connecting (`allow_address`), so a name that resolves to 127.0.0.1 or a
redirect to http://169.254.169.254/ gets nowhere either.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from probe.analysis.dnscheck import is_bogon
from probe.values import check_url as check_target_url

MAX_URL_LENGTH: Final = 4096
MAX_CLIENTS: Final = 10_000
"""Rate-limit buckets kept at most; full (idle) buckets are dropped first when over."""


def is_public(address: str) -> bool:
    """Whether the helper may connect to `address` (an IP) without --allow-private.

    >>> is_public("93.184.216.34"), is_public("127.0.0.1"), is_public("fe80::1"), is_public("10.1.2.3")
    (True, False, False, False)
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public(str(embedded)):
            return False
        if ip.sixtofour is not None:
            # A 6to4 relay delivers to the IPv4 it carries, public as just checked. Not left to
            # `is_global`, whose table for 2002::/16 changed within 3.11 (3.11.2: private).
            return True
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return not is_bogon(str(ip)) and ip.is_global


_LOCAL_NAT64: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
"""RFC 8215's local-use NAT64 prefix: translated by the helper's own network into its IPv4 one."""
_V4_IN_LOW_32: Final = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated; sit tunnels still route it)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT IPv4-translated (RFC 7915)
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries and a gateway may deliver to (::ffff:127.0.0.1 is
    loopback in disguise; so is 6to4's 2002:7f00:1::), or None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _V4_IN_LOW_32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_filter(allow_private: bool) -> Callable[[str], bool] | None:
    """What engine.measure(allow_address=) gets: None (everything) when private targets are allowed."""
    return None if allow_private else is_public


def check_url(url: str, allow_private: bool) -> tuple[str, str] | None:
    """None when the helper may measure `url`, else (reason, detail) for the refusal.

    Reasons: "bad_url" (not an absolute http(s) URL with a host, or too long) and
    "private_target" (the host is an IP the helper must not reach).

    >>> check_url("https://www.example.com/", False) is None
    True
    >>> check_url("http://127.0.0.1:8080/admin", False)
    ('private_target', '127.0.0.1')
    >>> check_url("file:///etc/passwd", False)
    ('bad_url', 'scheme must be http or https')
    """
    if len(url) > MAX_URL_LENGTH:
        return "bad_url", f"longer than {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        return "bad_url", str(exc)
    if parts.scheme not in ("http", "https"):
        return "bad_url", "scheme must be http or https"
    host = parts.hostname
    if not host:
        return "bad_url", "no host"
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return "bad_url", "control characters or spaces"
    try:
        # What a measurement's Target accepts (a host IDNA can encode, ASCII only): else the
        # measurement would fail to start, a 500 with a traceback for any stranger's URL.
        check_target_url(url, ("http", "https"), "an http(s) URL", False)
    except ValueError as exc:
        return "bad_url", str(exc)
    if allow_private:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
            return "private_target", host
        return None  # a name: its addresses are checked once resolved
    return None if is_public(host) else ("private_target", host)


def client_key(address: str) -> str:
    """Whom a rate limit counts: an IPv4 address, or the /64 an IPv6 address is in.

    One IPv6 host usually holds a whole /64 and can pick any address in it, so counting per
    address would let it step around the limit.

    >>> client_key("198.51.100.7"), client_key("2001:db8:1:2:aaaa::1")
    ('198.51.100.7', '2001:db8:1:2::/64')
    >>> client_key("::ffff:198.51.100.7")
    '198.51.100.7'
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` as a bearer token (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    refused: bool = False


class RateLimiter:
    """A token bucket per client address: `rate` requests/s on average, `burst` at once.

    `allow(client, now)` returns (allowed, first_refusal): `first_refusal` is True for the first
    refusal after the client was last allowed, so a flood logs one line, not one per request.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, client: str, now: float) -> tuple[bool, bool]:
        if self.rate <= 0:
            return True, False
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._prune(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.refused = False
            return True, False
        first = not bucket.refused
        bucket.refused = True
        return False, first

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled (their clients are idle); if none, the oldest half."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        if not full:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k].stamp)
            full = by_age[: max(1, len(by_age) // 2)]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
