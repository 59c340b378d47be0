"""Passwords out of everything curfew writes for people: logs, error lines, printed URLs.

Two nets, because a URL in free text cannot be parsed reliably (a password may hold a space,
a ``/`` or an ``@``, and a library may quote it, decode it or cut it):

1. `redact_url(url)` for a string known to be one URL (the database URL in ``event=ready``,
   ``curfew db``): everything between ``://`` and the last ``@`` is credentials.
2. `redact(text)` for free text: every password of every URL in the loaded config (`remember`,
   called when a config is loaded) is replaced wherever it appears, in the forms it may take
   (as written, percent-decoded, percent-encoded, with spaces turned into ``_`` as the log
   events do); then any ``scheme://...@`` left is cut to ``scheme://***@``.

Passwords shorter than `MIN_SECRET` characters are only caught by the URL shape (replacing
"ab" everywhere would garble every line).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

MIN_SECRET = 4
MASK = "***"
# scheme:// then anything without whitespace up to the last "@" before whitespace.
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>\S*)@", re.IGNORECASE)

_secrets: set[str] = set()
_lock = threading.Lock()


def redact_url(url: str) -> str:
    """The URL with its password (or, without a user name, its whole userinfo) masked.

    >>> redact_url("postgresql://curfew:pa/ss w@rd@db.example.org:5432/curfew")
    'postgresql://curfew:***@db.example.org:5432/curfew'
    >>> redact_url("https://token@doh.example/dns-query")
    'https://***@doh.example/dns-query'
    >>> redact_url("sqlite:///data/curfew.db")
    'sqlite:///data/curfew.db'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:{MASK}" if colon and user and "/" not in user else MASK
    return f"{scheme}://{masked}@{host}"


def passwords(url: str) -> set[str]:
    """Every reading of the password in `url`: after the first ``:`` of the userinfo, up to
    the last ``@`` (curfew's reading) or the first one (SQLAlchemy's), as written and decoded.

    >>> sorted(passwords("postgresql://u:p@ss@h/db"))
    ['p', 'p@ss']
    """
    _, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return set()
    found = set()
    for userinfo in (rest.rpartition("@")[0], rest.partition("@")[0]):
        user, colon, password = userinfo.partition(":")
        found.add(password if colon else user)
    return {p for p in found if p}


def remember(urls: Iterable[str | None]) -> None:
    """Mask the passwords of these URLs in every later `redact` (the config's URLs)."""
    forms: set[str] = set()
    for url in urls:
        for password in passwords(url or ""):
            for form in (password, unquote(password), quote(password, safe=""), quote_plus(password)):
                forms.update((form, form.replace(" ", "_")))
    with _lock:
        _secrets.update(f for f in forms if len(f) >= MIN_SECRET)


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mask these strings (tokens read from files) in every later `redact`."""
    with _lock:
        _secrets.update(s for s in secrets if len(s) >= MIN_SECRET)


def forget() -> None:
    """Forget every remembered secret. For tests: a process's secrets are global, and one
    test's config must not change what another test's `redact` masks."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """`text` with every remembered password and every URL's userinfo masked.

    >>> redact("database=postgresql://curfew:hunter2@db/curfew")
    'database=postgresql://***@db/curfew'
    >>> redact("database=postgresql://curfew:***@db/curfew")
    'database=postgresql://curfew:***@db/curfew'
    """
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _USERINFO.sub(_mask, text)


PLACEHOLDERS = frozenset({"user:password", "user:pass"})
"""Userinfo that is the example in curfew's own messages ("expected postgresql://user:password@host/db")."""


def _mask(match: re.Match[str]) -> str:
    userinfo = match["userinfo"]
    user, _, password = userinfo.partition(":")
    if (password == MASK and "@" not in user and "/" not in user) or userinfo in PLACEHOLDERS:
        return match[0]  # masked already (`redact_url`), or an example: keep it as it is
    return f"{match['scheme']}{MASK}@"
