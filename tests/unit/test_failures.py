"""Exception -> OONI failure string, as a table."""

from __future__ import annotations

import errno
import socket
import ssl

import dns.exception
import dns.resolver
import h11
import pytest

from probe import failures
from probe.failures import classify, classify_gai, classify_rcode, classify_verification


def cert_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, message)
    exc.verify_code = code
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection_refused"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_reset"),
        (BrokenPipeError(errno.EPIPE, "pipe"), "connection_reset"),
        (TimeoutError(), "generic_timeout_error"),
        (OSError(errno.ETIMEDOUT, "timed out"), "generic_timeout_error"),
        (OSError(errno.EHOSTUNREACH, "no route"), "host_unreachable"),
        (OSError(errno.ENETUNREACH, "unreachable"), "network_unreachable"),
        (EOFError(), "eof_error"),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "eof_error"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "ssl_failed_handshake"),
        (cert_error(62, "Hostname mismatch, certificate is not valid for 'x'."), "ssl_invalid_hostname"),
        (cert_error(20, "unable to get local issuer certificate"), "ssl_unknown_authority"),
        (cert_error(19, "self-signed certificate in certificate chain"), "ssl_unknown_authority"),
        (cert_error(10, "certificate has expired"), "ssl_invalid_certificate"),
        (dns.resolver.NXDOMAIN(), "dns_nxdomain_error"),
        (dns.resolver.NoAnswer(), "dns_no_answer"),
        (dns.exception.Timeout(), "generic_timeout_error"),
        (h11.RemoteProtocolError("bad"), "http_request_failed"),
        (ValueError("something odd"), "unknown_failure: something odd"),
    ],
)
def test_classify(exc: BaseException, expected: str) -> None:
    assert classify(exc) == expected


def test_every_named_failure_is_ooni_spelling() -> None:
    for name in failures.KNOWN_FAILURES:
        assert name.islower() and " " not in name


@pytest.mark.parametrize(
    ("rcode", "expected"),
    [
        ("NOERROR", None),
        ("NXDOMAIN", "dns_nxdomain_error"),
        ("SERVFAIL", "dns_servfail_error"),
        ("REFUSED", "dns_refused_error"),
    ],
)
def test_rcodes(rcode: str, expected: str | None) -> None:
    assert classify_rcode(rcode) == expected


def test_getaddrinfo_codes() -> None:
    assert classify_gai(socket.EAI_NONAME) == "dns_nxdomain_error"
    assert classify_gai(socket.EAI_AGAIN) == "generic_timeout_error"
    assert classify_gai(socket.EAI_FAIL) == "dns_servfail_error"


def test_verification_by_message_when_code_is_generic() -> None:
    assert classify_verification(1, "IP address mismatch") == "ssl_invalid_hostname"


def test_wrapped_errors_are_classified_by_their_cause() -> None:
    import httpx

    inner = OSError("All connection attempts failed")
    inner.__cause__ = BaseExceptionGroup("attempts", [ConnectionRefusedError(errno.ECONNREFUSED, "refused")])
    outer = httpx.ConnectError("All connection attempts failed")
    outer.__cause__ = inner
    assert classify(outer) == "connection_refused"
    assert classify(httpx.ReadTimeout("slow")) == "generic_timeout_error"


def _wrapped(inner: BaseException, outer: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OSError(errno.EMFILE, "Too many open files"), "local_failure: emfile"),
        (OSError(errno.ENFILE, "Too many open files in system"), "local_failure: enfile"),
        (OSError(errno.ENOBUFS, "No buffer space available"), "local_failure: enobufs"),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), "local_failure: enomem"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), "local_failure: eaddrnotavail"),
        (MemoryError(), "local_failure: enomem"),
        # Wrapped the ways the layers see them: anyio's "All connection attempts failed" over a
        # group, httpx over httpcore over the socket error, a group whose second member is ours.
        (
            _wrapped(
                BaseExceptionGroup("attempts", [OSError(errno.EMFILE, "Too many open files")]),
                OSError("All connection attempts failed"),
            ),
            "local_failure: emfile",
        ),
        (
            BaseExceptionGroup(
                "happy eyeballs",
                [ConnectionRefusedError(errno.ECONNREFUSED, "refused"), OSError(errno.ENOBUFS, "no buffers")],
            ),
            "local_failure: enobufs",
        ),
    ],
)
def test_the_machines_own_shortage_is_a_local_failure(exc: BaseException, expected: str) -> None:
    assert classify(exc) == expected
    assert failures.is_local(classify(exc))
    assert failures.local_reason(expected) in failures.LOCAL_REASONS


def test_local_failures_through_httpx_are_local() -> None:
    import httpx

    outer = httpx.ConnectError("connect failed")
    outer.__cause__ = OSError(errno.EMFILE, "Too many open files")
    assert classify(outer) == "local_failure: emfile"


def test_getaddrinfo_out_of_memory_is_local() -> None:
    assert classify_gai(socket.EAI_MEMORY) == "local_failure: enomem"


@pytest.mark.parametrize("name", [*failures.KNOWN_FAILURES, "unknown_failure: [Errno 24] Too many open"])
def test_no_network_failure_is_local(name: str) -> None:
    # The analysis judges every one of these: none may be mistaken for the machine's own failure.
    assert not failures.is_local(name)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        OSError(errno.EHOSTUNREACH, "no route"),
        OSError(errno.ENETUNREACH, "unreachable"),
        TimeoutError(),
        ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        dns.resolver.NXDOMAIN(),
    ],
)
def test_network_failures_are_not_local(exc: BaseException) -> None:
    assert failures.local(exc) is None
    assert not failures.is_local(classify(exc))
