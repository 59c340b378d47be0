"""Names for imported measurements: a target per input URL, or per `--target NAME=PATTERN`.

A pattern is a domain (``facebook.com``: that host and every name under it, so
``www.facebook.com`` and ``m.facebook.com`` count as the same target), a host glob
(``*.fbcdn.net``), or a URL glob when it has a scheme (``https://www.youtube.com/watch*``).
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Final
from urllib.parse import urlsplit

NAME_LENGTH: Final = 63
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")


def matches(pattern: str, url: str) -> bool:
    """Whether `url` belongs to the target `pattern` describes.

    >>> matches("facebook.com", "https://m.facebook.com/"), matches("facebook.com", "http://notfacebook.com/")
    (True, False)
    >>> matches("https://www.youtube.com/watch*", "https://www.youtube.com/watch?v=x")
    True
    """
    pattern = pattern.strip()
    if "://" in pattern:
        return fnmatchcase(url.lower(), pattern.lower())
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    domain = pattern.lower().rstrip(".")
    if any(ch in domain for ch in "*?["):
        return fnmatchcase(host, domain)
    return host == domain or host.endswith("." + domain)


def safe_name(text: str) -> str:
    """`text` as a valid curfew name (letters, digits, _ . -; at most 63 characters).

    >>> safe_name("KZ-AS9198"), safe_name("K Z/AS 1")
    ('KZ-AS9198', 'K-Z-AS-1')
    """
    return (_UNSAFE.sub("-", text).strip("-_.") or "unknown")[:NAME_LENGTH]


def target_name(url: str) -> str:
    """The default target name: the input's host (a valid curfew name, at most 63 characters).

    >>> target_name("https://www.facebook.com/"), target_name("http://[2001:db8::1]/")
    ('www.facebook.com', '2001-db8-1')
    """
    return safe_name((urlsplit(url).hostname or "unknown").lower().rstrip("."))


def parse_target(text: str) -> tuple[str, str]:
    """``NAME=PATTERN`` from the command line. Raises ValueError when malformed."""
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise ValueError(f"expected NAME=PATTERN, got {text!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"bad target name {name!r}: letters, digits, _ . - (at most 63)")
    return name, pattern


def parse_vantage(text: str) -> tuple[str, str]:
    """``CC-ASN=NAME``, ``ASN=NAME`` or a bare ``NAME`` (every vantage) from the command line."""
    key, sep, name = text.partition("=")
    if not sep:
        key, name = "*", text
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"bad vantage name {name!r}: letters, digits, _ . - (at most 63)")
    return key.upper() if key != "*" else key, name
