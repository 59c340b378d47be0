"""TLS layer: a handshake with SNI on a connected socket, recording what the peer sent.

The handshake first runs with the validating context (cheap: OpenSSL checks the chain in
C). If the chain does not validate, the failure is kept as `validation_failure` and the
handshake is repeated on a fresh connection without validation, so an intercepting
middlebox's chain is recorded and the HTTP step can still see what it serves.
"""

from __future__ import annotations

import _ssl
import asyncio
import base64
import dataclasses
import hashlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from probe import failures
from probe.clock import Clock
from probe.layers.stream import TlsStream
from probe.model import Certificate, TlsObservation
from probe.vantage import VantageNetwork

_ATTRIBUTE_NAMES = {
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "commonName": "CN",
    "emailAddress": "E",
}

Reconnect = Callable[[], Awaitable[tuple[socket.socket | None, str | None]]]
"""A fresh connection to the same address, or None and the connect's failure."""


async def handshake(
    sock: socket.socket,
    address: str,
    port: int,
    server_name: str,
    net: VantageNetwork,
    timeout: float,
    clock: Clock,
    origin: float,
    reconnect: Reconnect,
) -> tuple[TlsObservation, TlsStream | None]:
    """Handshake on `sock` (which this function owns from now on)."""
    start = clock.monotonic()
    t0 = start - origin
    validation_failure: str | None = None
    stream, failure = await _attempt(sock, net.validating, server_name, timeout)
    if failure is not None and failure.startswith("ssl_") and failure != failures.SSL_FAILED_HANDSHAKE:
        validation_failure = failure
        remaining = timeout - (clock.monotonic() - start)
        fresh, reconnect_failure = await reconnect() if remaining > 0 else (None, None)
        if fresh is None:
            # The chain is what failed; unless this machine could not even reconnect, which
            # makes the whole observation its own failure, not the network's.
            local = failures.is_local(reconnect_failure)
            stream, failure = None, (reconnect_failure if local else validation_failure)
        else:
            stream, failure = await _attempt(fresh, net.permissive, server_name, remaining)
    t = clock.monotonic() - origin
    if stream is None:
        obs = TlsObservation(address, port, server_name, t0, t, failure=failure or validation_failure)
        return obs, None
    obj = stream.obj
    cipher = obj.cipher()
    obs = TlsObservation(
        address=address,
        port=port,
        server_name=server_name,
        t0=t0,
        t=t,
        failure=None,
        version=obj.version(),
        cipher=cipher[0] if cipher else None,
        alpn=obj.selected_alpn_protocol(),
        # The DER itself only for a chain that did not validate: it is the evidence (an
        # interceptor's certificates, exported as OONI's peer_certificates); a valid chain's
        # would add ~4 KB to every stored row for nothing.
        peer_chain=peer_chain(obj, keep_der=validation_failure is not None),
        valid=validation_failure is None,
        validation_failure=validation_failure,
    )
    return obs, stream


async def _attempt(
    sock: socket.socket, context: ssl.SSLContext, server_name: str, timeout: float
) -> tuple[TlsStream | None, str | None]:
    stream = TlsStream(sock, context, server_name)
    try:
        async with asyncio.timeout(timeout):
            await stream.handshake()
    except TimeoutError:
        stream.close()
        return None, failures.GENERIC_TIMEOUT
    except Exception as exc:  # every network error becomes data
        stream.close()
        return None, failures.classify(exc)
    return stream, None


def peer_chain(obj: ssl.SSLObject, *, keep_der: bool = False) -> tuple[Certificate, ...]:
    """The certificates the peer sent, leaf first (works without validation); with `keep_der`
    each carries its DER (base64)."""
    inner: Any = getattr(obj, "_sslobj", None)
    getter = getattr(inner, "get_unverified_chain", None)
    raw: list[Any] = list(getter() or []) if getter is not None else []
    if not raw:
        der = obj.getpeercert(binary_form=True)
        return (_from_der(der, keep_der),) if der else ()
    chain = tuple(_describe(cert) for cert in raw)
    if keep_der:
        chain = tuple(
            dataclasses.replace(c, der=base64.b64encode(cert.public_bytes(_ssl.ENCODING_DER)).decode())
            for c, cert in zip(chain, raw, strict=True)
        )
    return chain


# Certificates already described, by DER: a target serves the same chain probe after probe,
# so decoding it (get_info, names, hash) is done once. Cleared when full.
_DESCRIBED: dict[bytes, Certificate] = {}
_DESCRIBED_MAX = 4096


def _describe(cert: Any) -> Certificate:
    der: bytes = cert.public_bytes(_ssl.ENCODING_DER)
    known = _DESCRIBED.get(der)
    if known is not None:
        return known
    info: dict[str, Any] = cert.get_info()
    described = Certificate(
        subject=format_name(info.get("subject", ())),
        issuer=format_name(info.get("issuer", ())),
        sha256=hashlib.sha256(der).hexdigest(),
        not_before=info.get("notBefore"),
        not_after=info.get("notAfter"),
    )
    if len(_DESCRIBED) >= _DESCRIBED_MAX:
        _DESCRIBED.clear()
    _DESCRIBED[der] = described
    return described


def _from_der(der: bytes, keep_der: bool = False) -> Certificate:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sha256=hashlib.sha256(der).hexdigest(),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        der=base64.b64encode(der).decode() if keep_der else None,
    )


def format_name(rdns: Any) -> str:
    """Format an ssl-module distinguished name as ``C=KZ, CN=Security Certificate``.

    >>> format_name(((("countryName", "KZ"),), (("commonName", "Security Certificate"),)))
    'C=KZ, CN=Security Certificate'
    """
    parts = []
    for rdn in rdns:
        for key, value in rdn:
            parts.append(f"{_ATTRIBUTE_NAMES.get(key, key)}={value}")
    return ", ".join(parts)
