"""Small builders for hand-made measurements: each step succeeds unless told otherwise.

    measurement("facebook", answers=("10.0.0.1",), tls_failure="connection_reset")

builds a measurement whose DNS resolved, whose TCP connected and whose TLS handshake was
reset, with no HTTP step (the probe stops at the first failure).
"""

from __future__ import annotations

from datetime import UTC, datetime

from probe.model import (
    Certificate,
    DnsObservation,
    HttpObservation,
    Measurement,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
)

STARTED = datetime(2019, 6, 9, 5, 0, tzinfo=UTC)
REAL_ISSUER = "C=US, O=DigiCert Inc, CN=DigiCert SHA2 High Assurance Server CA"
MITM_ISSUER = "C=KZ, CN=Security Certificate"
PAGE_TITLE = "Facebook - log in or sign up"
PAGE_LENGTH = 60_000

_UNSET = object()


def http(
    url: str = "https://www.facebook.com/",
    *,
    status: int | None = 200,
    failure: str | None = None,
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/html"), ("X-FB-Debug", "abc")),
    title: str | None = PAGE_TITLE,
    body_length: int | None = PAGE_LENGTH,
    body_sample: str | None = "<!DOCTYPE html><html><head><title>Facebook</title>",
    address: str | None = None,
) -> HttpObservation:
    """An HTTP observation: by default the real page."""
    if failure is not None:
        return HttpObservation(url=url, address=address, t0=0.3, t=5.3, failure=failure)
    return HttpObservation(
        url=url,
        address=address,
        t0=0.3,
        t=0.5,
        status=status,
        headers=headers,
        title=title,
        body_length=body_length,
        body_sample=body_sample,
        ttfb=0.1,
    )


def throughput(
    bps: float, *, seconds: float = 10.0, failure: str | None = None, complete: bool = True
) -> ThroughputObservation:
    """A bulk download that averaged `bps` bit/s over `seconds`."""
    total = int(bps * seconds / 8)
    return ThroughputObservation(
        url="https://www.facebook.com/bulk",
        t0=1.0,
        t=1.0 + seconds,
        failure=failure,
        bytes=total,
        samples=((seconds / 2, total // 2), (seconds, total)),
        complete=complete,
    )


def measurement(
    target: str = "facebook",
    *,
    url: str | None = None,
    host: str | None = None,
    vantage: str = "kz-kazakhtelecom",
    answers: tuple[str, ...] = ("157.240.0.35",),
    dns_failure: str | None = None,
    dns_engine: str = "udp",
    tcp_failure: str | None = None,
    idle_reset: bool | None = None,
    tls_failure: str | None = None,
    tls_valid: bool | None = True,
    validation_failure: str | None = None,
    issuer: str = REAL_ISSUER,
    http_obs: HttpObservation | object | None = _UNSET,
    http_failure: str | None = None,
    throughput_obs: ThroughputObservation | None = None,
) -> Measurement:
    """A measurement that stops at the first failing step, like the engine does."""
    if host is None:
        host = {"facebook": "www.facebook.com"}.get(target, f"www.{target}.example")
    if url is None:
        url = f"https://{host}/"
    https = url.startswith("https://")
    dns = DnsObservation(
        query=host,
        resolver="192.0.2.53",
        engine=dns_engine,  # type: ignore[arg-type]
        t0=0.0,
        t=0.05,
        answers=() if dns_failure else answers,
        failure=dns_failure,
    )
    base = Measurement(vantage=vantage, target=target, url=url, started_at=STARTED, runtime=1.0, dns=dns)
    if dns_failure is not None or not answers:
        return base
    port = 443 if https else 80
    tcp = tuple(
        TcpObservation(address=a, port=port, t0=0.05, t=0.1, failure=tcp_failure, idle_reset=idle_reset)
        for a in answers
    )
    if tcp_failure is not None:
        return _replace(base, tcp=tcp)
    tls: tuple[TlsObservation, ...] = ()
    if https:
        chain = (Certificate(subject=f"CN={host}", issuer=issuer, sha256="00" * 32),)
        tls = tuple(
            TlsObservation(
                address=a,
                port=port,
                server_name=host,
                t0=0.1,
                t=0.2,
                failure=tls_failure,
                version=None if tls_failure else "TLSv1.3",
                peer_chain=() if tls_failure else chain,
                valid=None if tls_failure else tls_valid,
                validation_failure=None if tls_failure else validation_failure,
            )
            for a in answers
        )
        if tls_failure is not None or tls_valid is False:
            return _replace(base, tcp=tcp, tls=tls)
    if http_obs is _UNSET:
        http_obs = http(url, failure=http_failure, address=answers[0])
    assert http_obs is None or isinstance(http_obs, HttpObservation)
    return _replace(base, tcp=tcp, tls=tls, http=http_obs, throughput=throughput_obs)


def _replace(m: Measurement, **changes: object) -> Measurement:
    from dataclasses import replace

    return replace(m, **changes)  # type: ignore[arg-type]


def control(name: str = "wikipedia", **kwargs: object) -> Measurement:
    """A control target at the same vantage; succeeds unless told otherwise."""
    kwargs.setdefault("answers", ("185.15.59.224",))
    return measurement(name, **kwargs)  # type: ignore[arg-type]


def at_control_vantage(target: str = "facebook", **kwargs: object) -> Measurement:
    """The same target measured from the control vantage (a different geo-DNS answer by default)."""
    kwargs.setdefault("answers", ("157.240.0.35",))
    return measurement(target, vantage="control-de", **kwargs)  # type: ignore[arg-type]


def also_reached(m: Measurement, addresses: tuple[str, ...], *, valid: bool = True) -> Measurement:
    """`m` (a control) that also connected and handshook to `addresses`, as a helper does with
    the addresses the vantage resolved."""
    port = 443 if m.url.startswith("https://") else 80
    host = m.dns.query if m.dns is not None else ""
    tcp = tuple(TcpObservation(address=a, port=port, t0=0.05, t=0.1) for a in addresses)
    tls = tuple(
        TlsObservation(
            address=a,
            port=port,
            server_name=host,
            t0=0.1,
            t=0.2,
            version="TLSv1.3",
            peer_chain=(Certificate(subject=f"CN={host}", issuer=REAL_ISSUER, sha256="00" * 32),),
            valid=valid,
            validation_failure=None if valid else "ssl_invalid_hostname",
        )
        for a in addresses
    )
    return _replace(m, tcp=m.tcp + tcp, tls=m.tls + tls if port == 443 else m.tls)
