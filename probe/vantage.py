"""Everything specific to one vantage point, in one place: where to bind, how to resolve,
which proxy to go through, which trust store judges certificates.

The layers receive a `VantageNetwork` and never look at the configuration themselves.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from probe.config import Config, Vantage, parse_resolver
from probe.redaction import redact_url

ALPN = ["http/1.1"]


@dataclass(frozen=True)
class VantageNetwork:
    name: str
    source_address: str | None
    resolver_kind: str  # "system" | "udp" | "doh"
    resolver_host: str | None  # IP for udp, URL for doh
    resolver_port: int | None
    proxy: str | None
    ca_bundle: str | None  # the trust store for DoH (httpx verifies with it)
    validating: ssl.SSLContext = field(compare=False, repr=False)
    permissive: ssl.SSLContext = field(compare=False, repr=False)
    sockets: Callable[[int, int], Any] = field(default=socket.socket, compare=False, repr=False)
    """Makes the layers' sockets from (family, type): the kernel's, or the lab simulation's
    in-memory ones (`probe.lab.memnet`), which is the seam below `probe/layers`."""

    @property
    def resolver_label(self) -> str:
        if self.resolver_kind == "system":
            return "system"
        if self.resolver_kind == "doh":
            return redact_url(str(self.resolver_host))  # recorded with each measurement
        return f"{self.resolver_host}:{self.resolver_port}"

    @property
    def proxy_label(self) -> str | None:
        """The proxy URL without credentials, safe to record and log."""
        if self.proxy is None:
            return None
        parts = urlsplit(self.proxy)
        netloc = f"{parts.hostname}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, "", "", ""))

    def new_socket(self, address: str) -> socket.socket:  # or what `sockets` makes
        """A non-blocking TCP socket for `address`, bound to the vantage's source address."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock: socket.socket = self.sockets(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.source_address is not None and (":" in self.source_address) == (
                family == socket.AF_INET6
            ):
                sock.bind((self.source_address, 0))
        except BaseException:
            sock.close()
            raise
        return sock


def source_address_problem(address: str) -> OSError | None:
    """Why probes could not bind to `address` (not an address of this machine), or None.
    For `curfew check`: a vantage whose every probe would fail to bind is refused up front."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError as exc:
            return exc
    return None


@lru_cache(maxsize=16)
def tls_contexts(ca_bundle: Path | None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(validating, permissive) client contexts.

    The validating one checks the chain and the name against the trust store; the
    permissive one completes any handshake so an intercepting chain can be recorded.
    """
    validating = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    validating.set_alpn_protocols(ALPN)
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    permissive.check_hostname = False
    permissive.verify_mode = ssl.CERT_NONE
    permissive.set_alpn_protocols(ALPN)
    for ctx in (validating, permissive):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return validating, permissive


def vantage_network(
    vantage: Vantage, config: Config, sockets: Callable[[int, int], Any] = socket.socket
) -> VantageNetwork:
    kind, host, port = parse_resolver(vantage.resolver)
    validating, permissive = tls_contexts(config.tls.ca_bundle)
    return VantageNetwork(
        name=vantage.name,
        source_address=vantage.source_address,
        resolver_kind=kind,
        resolver_host=host,
        resolver_port=port,
        proxy=vantage.proxy,
        ca_bundle=str(config.tls.ca_bundle) if config.tls.ca_bundle else None,
        validating=validating,
        permissive=permissive,
        sockets=sockets,
    )
