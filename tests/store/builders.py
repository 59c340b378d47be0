"""Realistic results for the store's tests and benchmark: a few KB of observations each.

For example ``result("tls_blocked", started_at=T0 + timedelta(minutes=3))``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from probe.model import (
    Analysis,
    Certificate,
    DnsObservation,
    HttpObservation,
    Measurement,
    Result,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
)

T0 = datetime(2019, 6, 9, 5, 0, tzinfo=UTC)
ISSUER = "C=US, O=DigiCert Inc, CN=DigiCert SHA2 High Assurance Server CA"
ROOT = "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert High Assurance EV Root CA"
HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "private, no-cache, no-store, must-revalidate"),
    ("Strict-Transport-Security", "max-age=15552000; preload"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "0"),
    ("Vary", "Accept-Encoding"),
    ("X-FB-Debug", "m2dZq0mE7qJ8cGv0yQ2qk7o8T6c5Yc8ZfYJ7i3oP1nS2cQ9W0aA=="),
    ("Date", "Sun, 09 Jun 2019 05:00:00 GMT"),
    ("Alt-Svc", 'h3=":443"; ma=86400'),
    ("Connection", "keep-alive"),
    ("Content-Length", "60213"),
)


def measurement(
    *,
    vantage: str = "kz-kazakhtelecom",
    target: str = "facebook",
    started_at: datetime = T0,
    uid: str | None = None,
    tls_failure: str | None = None,
) -> Measurement:
    """A measurement whose steps all ran: two addresses, a three-certificate chain, a page and
    a sampled bulk download; with `tls_failure`, it stops at the TLS handshake."""
    host = "www.facebook.com"
    answers = ("157.240.0.35", "2a03:2880:f10c:83:face:b00c:0:25de")
    chain = (
        Certificate(f"CN=*.{host}", ISSUER, "ab" * 32, "2019-05-01T00:00:00", "2019-08-01T12:00:00"),
        Certificate(ISSUER, ROOT, "cd" * 32, "2013-10-22T12:00:00", "2028-10-22T12:00:00"),
        Certificate(ROOT, ROOT, "ef" * 32, "2006-11-10T00:00:00", "2031-11-10T00:00:00"),
    )
    extra: dict[str, Any] = {}
    if uid is not None:
        extra["uid"] = uid
    tls = tuple(
        TlsObservation(
            address=a,
            port=443,
            server_name=host,
            t0=0.061,
            t=0.142,
            failure=tls_failure,
            version=None if tls_failure else "TLSv1.3",
            cipher=None if tls_failure else "TLS_AES_128_GCM_SHA256",
            alpn=None if tls_failure else "http/1.1",
            peer_chain=() if tls_failure else chain,
            valid=None if tls_failure else True,
        )
        for a in answers
    )
    done = tls_failure is None
    return Measurement(
        vantage=vantage,
        target=target,
        url=f"https://{host}/",
        started_at=started_at,
        runtime=12.5 if done else 5.2,
        dns=DnsObservation(host, "192.0.2.53", "udp", 0.0, 0.021, answers),
        tcp=tuple(TcpObservation(a, 443, 0.021, 0.061) for a in answers),
        tls=tls,
        http=HttpObservation(
            url=f"https://{host}/",
            address=answers[0],
            t0=0.142,
            t=0.48,
            status=200,
            headers=HEADERS,
            title="Facebook - log in or sign up",
            body_length=60213,
            body_sha256="12" * 32,
            ttfb=0.09,
            body_sample='<!DOCTYPE html><html lang="en"><head><title>Facebook</title>' + "x" * 900,
        )
        if done
        else None,
        throughput=ThroughputObservation(
            url=f"https://{host}/bulk",
            t0=0.5,
            t=10.5,
            bytes=8_000_000,
            samples=tuple((0.25 * i, 200_000 * i) for i in range(1, 41)),
            complete=True,
        )
        if done
        else None,
        labels={"asn": "AS9198", "city": "Almaty"},
        **extra,
    )


def analysis(verdict: str = "ok", **fields: Any) -> Analysis:
    if verdict == "ok":
        return Analysis("ok", None, None, "every step succeeded", accessible=True, **fields)
    fields.setdefault("operation", "tls_handshake")
    fields.setdefault("failure", "connection_reset")
    fields.setdefault("blocking", "tls")
    return Analysis(verdict, reason=f"{verdict}: the handshake was reset", accessible=False, **fields)  # type: ignore[arg-type]


def result(verdict: str = "ok", **kwargs: Any) -> Result:
    """A result; a blocked verdict gets a measurement cut at the TLS handshake."""
    if verdict != "ok":
        kwargs.setdefault("tls_failure", "connection_reset")
    return Result(measurement(**kwargs), analysis(verdict))


def results(
    n: int, *, start: datetime = T0, step: timedelta = timedelta(seconds=1), **kw: Any
) -> list[Result]:
    """`n` results of one pair, `step` apart, in time order."""
    return [result(started_at=start + i * step, **kw) for i in range(n)]
