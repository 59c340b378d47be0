"""Validated YAML files (config, lab scenarios): one way to read them and one way to word
their errors, so every bad file is reported as ``FILE: key.path[0].name: what is wrong``."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from probe.redaction import redact, redact_url

M = TypeVar("M", bound=BaseModel)


def key_path(loc: tuple[int | str, ...]) -> str:
    """``("vantages", 0, "resolver")`` -> ``vantages[0].resolver``.

    >>> key_path(("vantages", 0, "resolver"))
    'vantages[0].resolver'
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate(model: type[M], data: Any, source: str, error: type[Exception]) -> M:
    """Validate parsed YAML against `model`; raise `error` with one line naming the key."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        # Checks over the whole document carry no key path; they name their key themselves.
        where = f"{key_path(loc)}: " if loc else ""
        # A value quoted back may be a URL pasted in the wrong place, password and all.
        value = first.get("input")
        if isinstance(value, str) and "@" in value and value in message:
            message = message.replace(value, redact_url(value) if "://" in value else "***")
        raise error(f"{source}: {where}{redact(message)}") from None


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """Parse a YAML file; raise `error` naming the file (and the line) when it cannot."""
    try:
        # At most MAX_BYTES + 1: /dev/zero must not fill the memory (a pipe, /dev/stdin, is fine).
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the name
        raise error(f"{path}: cannot read: not a valid path") from None
    if len(raw) > MAX_BYTES:
        raise error(f"{path}: larger than {MAX_BYTES // 1024 // 1024} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{path}: not valid YAML{where}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
    except Exception as exc:  # a constructor's own error: an int of 5,000 digits, a bad date
        raise error(f"{path}: not valid YAML ({type(exc).__name__})") from None
    if _depth(data) > MAX_DEPTH:
        # A config is a few levels deep; hundreds of levels would only exhaust the stack later.
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep")
    return data


MAX_DEPTH = 32
MAX_BYTES = 16 * 1024 * 1024
"""A config or a scenario is a few kilobytes; this bounds the time and memory a wrong file costs."""


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest, without recursion (YAML may nest thousands deep).

    >>> _depth({"a": [1, {"b": 2}]})
    3
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen: set[int] = set()
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            if id(item) in seen:  # aliases may share, or even contain, a node
                continue
            seen.add(id(item))
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


# --- values that `run` hands to a socket, a parser or a driver -----------------------------------
# Their messages never quote the value: a URL may carry a password.

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
    port = url["port"]
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{expected}: port out of range (1-65535)")
    database = unquote(url["database"] or "")
    if backend == "sqlite" and (not database or database == ":memory:" or database.startswith("file:")):
        raise ValueError(f"{expected}: SQLite needs a file (sqlite:///path/curfew.db)")
    host = url["ipv4host"] or url["ipv6host"]
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
            base64.b64decode(b"".join(block.split()), validate=True)
        except ValueError:
            continue
        return
    raise ValueError(f"{path}: no PEM certificate that loads")


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
