"""The SNI and Host parsers, fed real ClientHellos made by Python's own ssl module."""

from __future__ import annotations

import ssl

import pytest

from probe.lab.clienthello import NeedMoreData, NotRecognised, http_host, tls_server_name


def client_hello(server_name: str | None) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def split_into_records(hello: bytes, first: int) -> bytes:
    """Re-frame one handshake record as two, the first carrying `first` bytes."""
    body = hello[5:]
    header = hello[:3]
    one, two = body[:first], body[first:]
    return header + len(one).to_bytes(2, "big") + one + header + len(two).to_bytes(2, "big") + two


def test_sni_is_read() -> None:
    assert tls_server_name(client_hello("www.facebook.com")) == "www.facebook.com"


def test_sni_is_lower_cased() -> None:
    assert tls_server_name(client_hello("WWW.YouTube.COM")) == "www.youtube.com"


def test_no_sni_gives_none() -> None:
    assert tls_server_name(client_hello(None)) is None


def test_hello_split_across_records() -> None:
    data = split_into_records(client_hello("static.xx.fbcdn.net"), 3)
    assert tls_server_name(data) == "static.xx.fbcdn.net"


@pytest.mark.parametrize("cut", [0, 1, 4, 5, 40, -1])
def test_truncated_hello_needs_more(cut: int) -> None:
    hello = client_hello("www.facebook.com")
    with pytest.raises(NeedMoreData):
        tls_server_name(hello[:cut])


def test_truncated_second_record_needs_more() -> None:
    data = split_into_records(client_hello("www.facebook.com"), 10)
    with pytest.raises(NeedMoreData):
        tls_server_name(data[:-3])


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x17\x03\x03\x00\x05hello",  # application data, not a handshake
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # ServerHello
        b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00",  # ClientHello cut inside
    ],
)
def test_not_a_client_hello(data: bytes) -> None:
    with pytest.raises(NotRecognised):
        tls_server_name(data)


@pytest.mark.parametrize(
    ("data", "host"),
    [
        (b"GET / HTTP/1.1\r\nHost: news.lab\r\n\r\n", "news.lab"),
        (b"GET /x HTTP/1.0\r\nAccept: */*\r\nhost:  NEWS.lab:8080 \r\n\r\n", "news.lab"),
        (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "::1"),
        (b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", None),
    ],
)
def test_http_host(data: bytes, host: str | None) -> None:
    assert http_host(data) == host


def test_http_head_incomplete() -> None:
    with pytest.raises(NeedMoreData):
        http_host(b"GET / HTTP/1.1\r\nHost: news.lab\r\n")


@pytest.mark.parametrize("data", [b"\x16\x03\x01\x02\x00\x01" + b"\r\n\r\n", b"SSH-2.0-x y\r\n\r\n"])
def test_http_not_recognised(data: bytes) -> None:
    with pytest.raises(NotRecognised):
        http_host(data)
