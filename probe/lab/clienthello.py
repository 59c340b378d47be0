"""Find the name a client asks for in the first bytes of a connection.

`tls_server_name(data)` reads the SNI from a TLS ClientHello, which may be split across
several records; `http_host(data)` reads the Host header of an HTTP/1.x request head.
Both raise `NeedMoreData` when `data` stops early and `NotRecognised` when the bytes are
not what was expected, so the caller can keep reading or give up. No I/O here.
"""

from __future__ import annotations

_RECORD_HANDSHAKE = 22
_HANDSHAKE_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_MAX_HELLO = 64 * 1024
_MAX_HTTP_HEAD = 16 * 1024


class NeedMoreData(Exception):
    """The bytes so far are a valid beginning; read more."""


class NotRecognised(Exception):
    """The bytes are not a ClientHello / HTTP request (or are malformed)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NotRecognised("field runs past its container")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def handshake_bytes(data: bytes) -> bytes:
    """Join the handshake-record payloads until one whole ClientHello message is present."""
    body = bytearray()
    pos = 0
    while True:
        if len(body) >= 4:
            if body[0] != _HANDSHAKE_CLIENT_HELLO:
                raise NotRecognised("first handshake message is not a ClientHello")
            needed = 4 + int.from_bytes(body[1:4], "big")
            if needed > _MAX_HELLO:
                raise NotRecognised("ClientHello too large")
            if len(body) >= needed:
                return bytes(body[:needed])
        if len(data) < pos + 5:
            raise NeedMoreData
        content_type, major = data[pos], data[pos + 1]
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if content_type != _RECORD_HANDSHAKE or major != 3 or length == 0 or length > 16384 + 2048:
            raise NotRecognised("not a TLS handshake record")
        if len(data) < pos + 5 + length:
            raise NeedMoreData
        body += data[pos + 5 : pos + 5 + length]
        pos += 5 + length


def tls_server_name(data: bytes) -> str | None:
    """The SNI host name in a ClientHello (lower case), or None if the client sent none.

    >>> tls_server_name(b"GET / HTTP/1.1\\r\\n")
    Traceback (most recent call last):
    ...
    probe.lab.clienthello.NotRecognised: not a TLS handshake record
    """
    message = handshake_bytes(data)
    reader = _Reader(message[4:])
    reader.take(2 + 32)  # legacy_version, random
    reader.vector(1)  # session id
    reader.vector(2)  # cipher suites
    reader.vector(1)  # compression methods
    if reader.left == 0:
        return None  # no extensions at all
    extensions = _Reader(reader.vector(2))
    while extensions.left:
        ext_type = extensions.uint(2)
        ext = _Reader(extensions.vector(2))
        if ext_type != _EXT_SERVER_NAME:
            continue
        names = _Reader(ext.vector(2))
        while names.left:
            name_type = names.uint(1)
            name = names.vector(2)
            if name_type == 0:  # host_name
                try:
                    return name.decode("ascii").lower().rstrip(".")
                except UnicodeDecodeError:
                    raise NotRecognised("SNI is not ASCII") from None
        return None
    return None


def http_host(data: bytes) -> str | None:
    """The Host header (lower case, port removed) of an HTTP/1.x request head, or None.

    >>> http_host(b"GET / HTTP/1.1\\r\\nHost: News.Lab:8080\\r\\n\\r\\n")
    'news.lab'
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > _MAX_HTTP_HEAD:
            raise NotRecognised("HTTP request head too large")
        if data and not data[:1].isalpha():
            raise NotRecognised("not an HTTP request")
        raise NeedMoreData
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise NotRecognised("not an HTTP/1.x request line")
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == b"host":
            host = value.strip().decode("latin-1").lower()
            if host.startswith("["):
                return host[1:].partition("]")[0]
            return host.partition(":")[0].rstrip(".") or None
    return None
