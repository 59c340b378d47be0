"""The store's log lines: one event, key=value fields (logfmt), like the daemon's own.

>>> event("journal-line-skipped", file="/var/lib/curfew/spool/1.spool", line=3, reason="torn line")
'event=journal-line-skipped file=/var/lib/curfew/spool/1.spool line=3 reason="torn line"'
"""

from __future__ import annotations

import json
from typing import Final

_PLAIN: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/,+@[]()")
MAX_REASON: Final = 500
"""Characters of an exception's message kept in a line (a driver's can be a page long)."""


def value(v: object) -> str:
    """One value: as it is when it is plain, else quoted as a JSON string (no newline, ever).

    >>> value(None), value(3), value("a b"), value('say "no"')
    ('-', '3', '"a b"', '"say \\\\"no\\\\""')
    """
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    text = str(v)
    if isinstance(v, BaseException):
        text = " ".join(text.split()) or type(v).__name__
        if len(text) > MAX_REASON:
            text = text[:MAX_REASON] + "..."
    if text and all(c in _PLAIN for c in text):
        return text
    return json.dumps(text)


def event(name: str, **fields: object) -> str:
    """``event=NAME key=value ...`` in the order given."""
    return " ".join([f"event={name}", *(f"{k}={value(v)}" for k, v in fields.items())])
