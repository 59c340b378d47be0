"""Map exceptions from sockets, ssl, dnspython, h11 and proxies to OONI failure strings.

This is the one place where backend exceptions become data (like httpx's
`map_httpcore_exceptions`). The names come from ooni/spec df-007-errors.

Errors that say the probe's own machine ran short (no descriptor, no buffer, no memory, no
local port) are not network failures: they become ``local_failure: <reason>`` (see
`LOCAL_REASONS`, `is_local`), which the analysis never judges and the daemon never stores as a
measurement of the network (docs/verdicts.md, "The daemon's own failures").
"""

from __future__ import annotations

import errno
import ssl
from typing import Final

CONNECTION_REFUSED: Final = "connection_refused"
CONNECTION_RESET: Final = "connection_reset"
GENERIC_TIMEOUT: Final = "generic_timeout_error"
EOF_ERROR: Final = "eof_error"
HOST_UNREACHABLE: Final = "host_unreachable"
NETWORK_UNREACHABLE: Final = "network_unreachable"
DNS_NXDOMAIN: Final = "dns_nxdomain_error"
DNS_NO_ANSWER: Final = "dns_no_answer"
DNS_REFUSED: Final = "dns_refused_error"
DNS_SERVFAIL: Final = "dns_servfail_error"
DNS_BOGON: Final = "dns_bogon_error"
SSL_INVALID_HOSTNAME: Final = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY: Final = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE: Final = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE: Final = "ssl_failed_handshake"
HTTP_REQUEST_FAILED: Final = "http_request_failed"

KNOWN_FAILURES: Final = (
    CONNECTION_REFUSED,
    CONNECTION_RESET,
    GENERIC_TIMEOUT,
    EOF_ERROR,
    HOST_UNREACHABLE,
    NETWORK_UNREACHABLE,
    DNS_NXDOMAIN,
    DNS_NO_ANSWER,
    DNS_REFUSED,
    DNS_SERVFAIL,
    DNS_BOGON,
    SSL_INVALID_HOSTNAME,
    SSL_UNKNOWN_AUTHORITY,
    SSL_INVALID_CERTIFICATE,
    SSL_FAILED_HANDSHAKE,
    HTTP_REQUEST_FAILED,
)

LOCAL_PREFIX: Final = "local_failure: "
"""The prefix of a failure that happened on the probe's own machine, not on the network."""

# errno -> the reason a local failure names (also the label value of the metric counting them).
# EADDRNOTAVAIL on connect/bind means no free local port or a source address the machine does
# not have: the machine's problem, never the path's (a censor cannot cause it).
_LOCAL_ERRNO: Final[dict[int, str]] = {
    errno.EMFILE: "emfile",  # the process is out of file descriptors (RLIMIT_NOFILE)
    errno.ENFILE: "enfile",  # the whole system is out of open files
    errno.ENOBUFS: "enobufs",  # no kernel buffer space for a socket
    errno.ENOMEM: "enomem",  # the kernel could not allocate memory
    errno.EADDRNOTAVAIL: "eaddrnotavail",  # no local address/port to connect from
}
LOCAL_REASONS: Final[tuple[str, ...]] = tuple(_LOCAL_ERRNO.values())
"""Every reason a local failure can name, in a fixed order (label values for the metric)."""

_ERRNO: Final[dict[int, str]] = {
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.EPIPE: CONNECTION_RESET,
    errno.ECONNABORTED: CONNECTION_RESET,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.EHOSTDOWN: HOST_UNREACHABLE,
    errno.ENETDOWN: NETWORK_UNREACHABLE,
}

_DNS_RCODE: Final[dict[str, str]] = {
    "NXDOMAIN": DNS_NXDOMAIN,
    "SERVFAIL": DNS_SERVFAIL,
    "REFUSED": DNS_REFUSED,
}


def is_local(failure: str | None) -> bool:
    """Whether `failure` happened on the probe's own machine (so it says nothing of the network).

    >>> is_local("local_failure: emfile"), is_local("connection_reset"), is_local(None)
    (True, False, False)
    """
    return failure is not None and failure.startswith(LOCAL_PREFIX)


def local_reason(failure: str) -> str:
    """The reason of a local failure string (``"emfile"``), a member of `LOCAL_REASONS`."""
    return failure.removeprefix(LOCAL_PREFIX)


def local(exc: BaseException) -> str | None:
    """The local failure `exc` (or the error it wraps) stands for, else None.

    Looks through exception groups (any member) and explicit causes, since the layers see
    local errors wrapped by anyio, httpx or dnspython.

    >>> local(OSError(errno.EMFILE, "Too many open files"))
    'local_failure: emfile'
    >>> local(MemoryError()), local(ConnectionResetError(errno.ECONNRESET, "reset"))
    ('local_failure: enomem', None)
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:  # bounded: each exception is visited once
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return LOCAL_PREFIX + "enomem"
        if isinstance(current, OSError) and current.errno in _LOCAL_ERRNO:
            return LOCAL_PREFIX + _LOCAL_ERRNO[current.errno]
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    return None


def unknown(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"unknown_failure: {text}"


def classify(exc: BaseException) -> str:
    """Return the OONI failure string for an exception raised by a network step.

    >>> classify(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    'connection_refused'
    >>> classify(TimeoutError())
    'generic_timeout_error'
    """
    # The machine's own shortage first: whatever step it hit, it is not the network's doing.
    own = local(exc)
    if own is not None:
        return own
    # Order matters: ssl errors are OSErrors, and timeouts are OSErrors too.
    if isinstance(exc, TimeoutError):
        return GENERIC_TIMEOUT
    if isinstance(exc, ssl.SSLCertVerificationError):
        return classify_verification(exc.verify_code, exc.verify_message)
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError):
        return EOF_ERROR
    if isinstance(exc, ssl.SSLError):
        text = f"{getattr(exc, 'reason', '') or ''} {exc}".upper()
        if "UNEXPECTED_EOF" in text or ("EOF" in text and "VIOLATION" in text):
            return EOF_ERROR
        return SSL_FAILED_HANDSHAKE
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return CONNECTION_RESET
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, EOFError) or type(exc).__name__ == "IncompleteReadError":
        return EOF_ERROR
    if isinstance(exc, OSError) and exc.errno in _ERRNO:
        return _ERRNO[exc.errno]
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return classify(exc.exceptions[0])
    if isinstance(exc, OSError) and exc.errno is None and exc.__cause__ is not None:
        return classify(exc.__cause__)  # anyio: "All connection attempts failed" from the real ones
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("dns."):
        return classify_dns(name)
    if module.startswith("h11"):
        return HTTP_REQUEST_FAILED
    if module.startswith("python_socks"):
        return classify_proxy(str(exc))
    if module.startswith(("httpx", "httpcore")):
        if "Timeout" in name:
            return GENERIC_TIMEOUT
        # httpx wraps the socket or ssl error that really happened: classify that one.
        cause = exc.__cause__ or exc.__context__
        if cause is not None and cause is not exc:
            return classify(cause)
        return unknown(exc)
    return unknown(exc)


def classify_dns(name: str) -> str:
    """Map a dnspython exception class name to a failure string."""
    if name == "NXDOMAIN":
        return DNS_NXDOMAIN
    if name in ("NoAnswer", "NoNameservers"):
        # NoNameservers is what dnspython raises when every server answered SERVFAIL/REFUSED;
        # callers that see the rcode use classify_rcode instead.
        return DNS_NO_ANSWER if name == "NoAnswer" else DNS_SERVFAIL
    if name in ("Timeout", "LifetimeTimeout"):
        return GENERIC_TIMEOUT
    return f"unknown_failure: dns {name}"


def classify_rcode(rcode: str) -> str | None:
    """Map a DNS response code name (``"NXDOMAIN"``) to a failure; None for NOERROR."""
    if rcode == "NOERROR":
        return None
    return _DNS_RCODE.get(rcode, f"unknown_failure: dns rcode {rcode}")


def classify_gai(code: int) -> str:
    """Map a getaddrinfo error code (socket.EAI_*) to a failure string."""
    import socket

    if code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
        return DNS_NXDOMAIN
    if code == socket.EAI_AGAIN:
        return GENERIC_TIMEOUT
    if code == socket.EAI_FAIL:
        return DNS_SERVFAIL
    if code == socket.EAI_MEMORY:
        return LOCAL_PREFIX + "enomem"  # the resolver library ran out of memory, here
    return f"unknown_failure: getaddrinfo {code}"


def classify_verification(code: int, message: str) -> str:
    """Map an X.509 verification result (OpenSSL verify code) to an ssl_* failure."""
    # OpenSSL X509_V_ERR_*: 62 hostname mismatch; 2, 18, 19, 20, 21 issuer unknown/self-signed.
    if code == 62 or "hostname" in message.lower() or "ip address mismatch" in message.lower():
        return SSL_INVALID_HOSTNAME
    if code in (2, 18, 19, 20, 21, 27, 28):
        return SSL_UNKNOWN_AUTHORITY
    return SSL_INVALID_CERTIFICATE


def classify_proxy(text: str) -> str:
    lowered = text.lower()
    if "refused" in lowered:
        return CONNECTION_REFUSED
    if "reset" in lowered:
        return CONNECTION_RESET
    if "timed out" in lowered or "timeout" in lowered:
        return GENERIC_TIMEOUT
    return f"unknown_failure: proxy {text}"
