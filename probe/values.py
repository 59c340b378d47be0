"""Values that `curfew run` hands to a socket, a parser or a driver (URLs, host names, database
URLs, PEM files, paths), checked the way those will read them, without importing any of them:
the config is read by the pure core too.

Messages never quote the value: a URL may carry a password.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

SAFE_URL_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
"""What a URL may be made of outside its user name and password: printable ASCII, no space
(h11 sends the request target and Host header as ASCII and refuses whitespace)."""


def check_url(value: str, schemes: tuple[str, ...], expected: str, need_port: bool) -> None:
    """Raise ValueError unless `value` is a URL of one of `schemes` with a host and a valid port.

    >>> check_url("https://example.org:8443/x", ("https",), "an https:// URL", False)
    >>> check_url("https://example.org:999999/", ("https",), "an https:// URL", False)
    Traceback (most recent call last):
    ...
    ValueError: expected an https:// URL: bad port (0-65535; percent-encode / ? # @ in a password)
    """
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes:
        raise ValueError(f"expected {expected}")
    # The user name and password are the part before the last "@" of the authority; the
    # rest must be plain ASCII. A "/", "?" or "#" in a password must be percent-encoded.
    authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, _, hostpart = rest[:authority_end].rpartition("@")
    if any(c < " " or c == "\x7f" for c in userinfo):
        raise ValueError(f"expected {expected}: control characters in the user name or password")
    if not all(c in SAFE_URL_CHARS for c in scheme + hostpart + rest[authority_end:]):
        raise ValueError(
            f"expected {expected}: spaces, control or non-ASCII characters (percent-encode them)"
        )
    parts = urlsplit(value)
    try:
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise ValueError(
            f"expected {expected}: bad port (0-65535; percent-encode / ? # @ in a password)"
        ) from None
    if not host:
        raise ValueError(f"expected {expected}: no host")
    # Port 0 is refused by the kernel at connect: a target that is always down, which the
    # lab uses on purpose; a proxy there would make every probe fail, so it needs a real port.
    if need_port and not port:
        raise ValueError(f"expected {expected}: no port (1-65535)")
    check_host(host, expected)


def check_host(host: str, expected: str) -> None:
    """An IP address or a DNS name that IDNA can encode (labels of 1-63, at most 253 long)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        raise ValueError(f"expected {expected}: not a valid host name") from None
    if len(encoded) > 253 or not all(c in SAFE_URL_CHARS for c in host) or ".." in host:
        raise ValueError(f"expected {expected}: not a valid host name")


_SQLALCHEMY_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)
"""SQLAlchemy 2.0's own URL pattern (sqlalchemy.engine.url._parse_url), copied: the config is
read by the pure core too, which imports no database library. `curfew check` and `run` parse
the URL with SQLAlchemy itself as well (probe.preflight), and the config fuzz holds the two
to the same answers."""


def check_database_url(value: str) -> None:
    """A SQLAlchemy URL of SQLite (with a file) or PostgreSQL, parsed as the store parses it.

    >>> check_database_url("postgresql://curfew:pa/ss w:rd@db.example.org:5432/curfew")
    >>> check_database_url("postgresql://curfew@db:99999/curfew")
    Traceback (most recent call last):
    ...
    ValueError: expected sqlite:///path or postgresql://user:password@host/db: port out of range (1-65535)
    """
    expected = "expected sqlite:///path or postgresql://user:password@host/db"
    url = _SQLALCHEMY_URL.match(value)
    if url is None:
        raise ValueError(expected)
    backend = url["name"].split("+", 1)[0]
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(expected)
    host = url["ipv4host"] or url["ipv6host"]
    if "@" in value.partition("://")[2].partition("@")[2].partition("?")[0]:
        # SQLAlchemy ends the password at its first "@": the rest would be taken for the host.
        raise ValueError(f"{expected}: an @ in the password must be percent-encoded (%40)")
    port = url["port"]
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{expected}: port out of range (1-65535)")
    database = unquote(url["database"] or "")
    if backend == "sqlite" and (not database or database == ":memory:" or database.startswith("file:")):
        raise ValueError(f"{expected}: SQLite needs a file (sqlite:///path/curfew.db)")
    if host:
        check_host(host, expected.removeprefix("expected "))
    if backend != "sqlite":
        unknown = sorted({key for key, _ in parse_qsl(url["query"] or "")} - POSTGRES_OPTIONS)
        if unknown:
            # asyncpg takes these as keyword arguments: an unknown one fails every connect.
            hint = " (asyncpg spells it ?ssl=require)" if "sslmode" in unknown else ""
            raise ValueError(f"{expected}: unknown option ?{unknown[0]}={hint}")


POSTGRES_OPTIONS = frozenset(
    {
        # asyncpg.connect's keyword arguments a URL can carry
        "host",
        "port",
        "user",
        "password",
        "database",
        "passfile",
        "service",
        "servicefile",
        "timeout",
        "command_timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "ssl",
        "direct_tls",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        # SQLAlchemy's asyncpg dialect's own
        "prepared_statement_cache_size",
        "prepared_statement_name_func",
    }
)
"""What a postgresql:// URL's query may set (SQLAlchemy hands the rest to asyncpg.connect)."""


PEM_BLOCK = re.compile(
    rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END (?:TRUSTED )?CERTIFICATE-----"
)


def check_ca_bundle(path: Path) -> None:
    """A file with at least one well-formed PEM certificate. Whether OpenSSL accepts it is
    `curfew check`'s and `run`'s to find out (probe.preflight loads it as the TLS layer will):
    this module is read by the pure core, which imports no `ssl`."""
    if path_kind(path) != "file":
        raise ValueError(f"file not found: {path}")
    try:
        blocks = PEM_BLOCK.findall(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    for block in blocks:
        try:
            der = base64.b64decode(b"".join(block.split()), validate=True)
        except ValueError:
            continue
        if _der_sequence(der):
            return
    raise ValueError(f"{path}: no PEM certificate that loads")


def _der_sequence(der: bytes) -> bool:
    """A certificate is one DER SEQUENCE filling the block: tag 0x30, then its length.
    Random base64 between the markers fails this; what passes is left to OpenSSL (preflight),
    but a reload, which does not run preflight, is then spared most bad files too.

    >>> _der_sequence(bytes([0x30, 0x03, 1, 2, 3]))
    True
    >>> _der_sequence(b"not a certificate")
    False
    """
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    if first < 0x80:
        return 2 + first == len(der)
    count = first & 0x7F
    if not 1 <= count <= 4 or len(der) < 2 + count:
        return False
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big") == len(der)


def path_kind(path: Path) -> str:
    """ "file", "directory", "other" or "missing"; ValueError for a name the system refuses.

    >>> path_kind(Path("/"))
    'directory'
    """
    import errno
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "missing"
        raise ValueError(f"{str(path)[:80]}: {exc.strerror}") from None
    except ValueError:  # an embedded NUL byte
        raise ValueError("not a valid path") from None
    if stat.S_ISREG(mode):
        return "file"
    return "directory" if stat.S_ISDIR(mode) else "other"
