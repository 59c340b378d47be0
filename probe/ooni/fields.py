"""Small readers for OONI's value shapes: times, failures, maybe-binary data, answers, tags."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from probe import failures as F
from probe.model import Certificate

TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
TITLE_SCAN: Final = 64 * 1024
BODY_SAMPLE: Final = 4096  # as much as the probe's own HTTP layer keeps

# Failure names of older OONI probes (ooniprobe 2.x, measurement-kit) -> today's (df-007).
_LEGACY_FAILURES: Final = {
    "connection_refused_error": F.CONNECTION_REFUSED,
    "connection_reset_error": F.CONNECTION_RESET,
    "dns_name_error": F.DNS_NXDOMAIN,
    "dns_lookup_error": F.DNS_NXDOMAIN,
    "response_never_received": F.GENERIC_TIMEOUT,
    "ssl_error": F.SSL_FAILED_HANDSHAKE,
    "dns_server_failure": F.DNS_SERVFAIL,
}


def failure(value: Any) -> str | None:
    """An OONI failure string in today's vocabulary; None for success.

    >>> failure("dns_name_error"), failure(None), failure("connection_reset")
    ('dns_nxdomain_error', None, 'connection_reset')
    >>> failure("ssl_error: error:14090086:SSL routines:certificate verify failed")
    'ssl_unknown_authority'

    """
    if value is None or value == "":
        return None
    text = str(value)
    if text.startswith("ssl_error"):
        # measurement-kit (2016-2020 mobile and desktop probes) names every TLS problem
        # "ssl_error: <OpenSSL's text>": keep what the text says.
        lowered = text.lower()
        if "certificate verify failed" in lowered or "unknown ca" in lowered or "self signed" in lowered:
            return F.SSL_UNKNOWN_AUTHORITY
        if "hostname" in lowered or "name mismatch" in lowered:
            return F.SSL_INVALID_HOSTNAME
        return F.SSL_FAILED_HANDSHAKE
    return _LEGACY_FAILURES.get(text, text)


def start_time(value: Any) -> datetime:
    """measurement_start_time ("YYYY-MM-DD hh:mm:ss", UTC; ISO 8601 accepted) as aware UTC.

    >>> start_time("2019-06-09 05:00:01")
    datetime.datetime(2019, 6, 9, 5, 0, 1, tzinfo=datetime.timezone.utc)
    """
    if not isinstance(value, str) or not value:
        raise ValueError("measurement_start_time is missing")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def binary(value: Any) -> bytes:
    """df-001's maybe-binary data: a string, or {"format": "base64", "data": ...}."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, Mapping) and value.get("format") == "base64":
        try:
            return base64.b64decode(str(value.get("data") or ""))
        except ValueError:
            return b""
    return str(value).encode()


def text(value: Any) -> str:
    """Maybe-binary data as text (invalid UTF-8 replaced)."""
    if isinstance(value, str):
        return value
    return binary(value).decode("utf-8", "replace")


def title(body: str) -> str | None:
    found = TITLE.search(body[:TITLE_SCAN])
    if found is None:
        return None
    words = " ".join(found.group(1).split())
    return words[:256] or None


def headers(message: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Header pairs from ``headers_list`` (in order, repeats kept), else the ``headers`` map."""
    listed = message.get("headers_list")
    if isinstance(listed, list):
        return tuple(
            (str(pair[0]), text(pair[1]))
            for pair in listed
            if isinstance(pair, list | tuple) and len(pair) == 2
        )
    mapped = message.get("headers")
    if isinstance(mapped, Mapping):
        return tuple((str(k), text(v[0] if isinstance(v, list) and v else v)) for k, v in mapped.items())
    return ()


def tags(entry: Mapping[str, Any]) -> tuple[str, ...]:
    value = entry.get("tags")
    return tuple(str(t) for t in value) if isinstance(value, list) else ()


def classic(entry: Mapping[str, Any]) -> bool:
    """Whether an LTE (0.5) observation belongs to the classic algorithm's view (ts-017: depth 0,
    fetch_body=true); entries without those tags (0.4) always do."""
    for tag in tags(entry):
        if tag.startswith("depth=") and tag != "depth=0":
            return False
        if tag == "fetch_body=false":
            return False
    return True


def answers(entries: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """The A and AAAA addresses among df-002 answers, in order, without repeats."""
    out: dict[str, None] = {}
    for answer in entries:
        address = answer.get("ipv4") or answer.get("ipv6")
        if address:
            out[str(address)] = None
    return tuple(out)


def number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _name(name: Any) -> str:
    """A distinguished name as curfew's TLS layer writes it: ``C=KZ, CN=Security Certificate``."""
    return ", ".join(f"{attr.rfc4514_attribute_name}={attr.value}" for rdn in name.rdns for attr in rdn)


_CERTIFICATES: dict[str, Certificate] = {}
_CERTIFICATES_MAX: Final = 4096


def certificate(entry: Any) -> Certificate | None:
    """A df-006 peer certificate ({"format": "base64", "data": DER}) described, its DER kept.

    A chain seen once is usually seen again (the same site, the same interceptor), so each is
    decoded once per process (bounded cache).
    """
    if not isinstance(entry, Mapping):
        return None
    data = entry.get("data")
    if not isinstance(data, str) or not data:
        return None
    known = _CERTIFICATES.get(data)
    if known is not None:
        return known
    from cryptography import x509

    try:
        der = base64.b64decode(data)
        cert = x509.load_der_x509_certificate(der)
        described = Certificate(
            subject=_name(cert.subject),
            issuer=_name(cert.issuer),
            sha256=hashlib.sha256(der).hexdigest(),
            not_before=cert.not_valid_before_utc.isoformat(),
            not_after=cert.not_valid_after_utc.isoformat(),
            der=data,
        )
    except ValueError:
        return None
    if len(_CERTIFICATES) >= _CERTIFICATES_MAX:
        _CERTIFICATES.clear()
    _CERTIFICATES[data] = described
    return described
