"""OONI Web Connectivity HTTP comparison (ooni/spec nettests/ts-017), as pure functions.

The measured response is compared with the control vantage's response to the same URL:

- body length: min/max of the two lengths > 0.7 (None when a body was truncated or unknown);
- status code: equal (None when the control got a 5xx: the server itself is failing);
- headers: the same set of *uncommon* header names, or at least one uncommon name in common;
- title: every word of 5+ characters in either title appears in the other (None if a title
  is missing).

The result is an http-diff unless the status codes match and at least one of the other
three matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit

from probe.model import HttpObservation

BODY_PROPORTION_THRESHOLD: Final = 0.7
TITLE_MIN_WORD: Final = 5

# Headers nearly every server sends (OONI's list plus hop-by-hop framing headers): sharing
# them says nothing about whether two responses came from the same server.
COMMON_HEADERS: Final = frozenset(
    {
        "date",
        "content-type",
        "server",
        "cache-control",
        "vary",
        "set-cookie",
        "location",
        "expires",
        "x-powered-by",
        "content-encoding",
        "last-modified",
        "accept-ranges",
        "pragma",
        "x-frame-options",
        "etag",
        "x-content-type-options",
        "age",
        "via",
        "p3p",
        "x-xss-protection",
        "content-language",
        "cf-ray",
        "strict-transport-security",
        "link",
        "x-varnish",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
    }
)


@dataclass(frozen=True)
class HttpComparison:
    """The four OONI heuristics; None means "could not be compared"."""

    body_length_match: bool | None
    body_proportion: float | None
    status_code_match: bool | None
    headers_match: bool | None
    title_match: bool | None

    @property
    def http_diff(self) -> bool | None:
        """True when the responses differ per ts-017; None when the status is not comparable."""
        if self.status_code_match is None:
            return None
        if not self.status_code_match:
            return True
        return not (self.body_length_match or self.headers_match or self.title_match)


def body_proportion(measured: HttpObservation, control: HttpObservation) -> float | None:
    """min/max of the body lengths; 1.0 when both are empty; None when not comparable."""
    if measured.body_length is None or control.body_length is None:
        return None
    if measured.body_truncated or control.body_truncated:
        # Both lengths would be the read cap, so they say nothing about the real bodies.
        return None
    small, large = sorted((measured.body_length, control.body_length))
    if large == 0:
        return 1.0
    return small / large


def uncommon_headers(obs: HttpObservation) -> frozenset[str]:
    """Lowercased names of the response headers not in `COMMON_HEADERS`."""
    return frozenset(key.lower() for key, _ in obs.headers) - COMMON_HEADERS


def headers_match(measured: HttpObservation, control: HttpObservation) -> bool:
    """Same uncommon header names, or at least one uncommon name in common."""
    mine, theirs = uncommon_headers(measured), uncommon_headers(control)
    return mine == theirs or bool(mine & theirs)


def title_match(measured: str | None, control: str | None) -> bool | None:
    """Whether the titles agree on their words of 5+ characters (case-insensitive).

    >>> title_match("Example Domain", "example domain")
    True
    >>> title_match("Access denied", "Example Domain")
    False
    """
    if not measured or not control:
        return None
    mine = {w.lower() for w in measured.split() if len(w) >= TITLE_MIN_WORD}
    theirs = {w.lower() for w in control.split() if len(w) >= TITLE_MIN_WORD}
    return mine == theirs


def compare_http(measured: HttpObservation, control: HttpObservation) -> HttpComparison:
    """Compare a measured HTTP response with the control vantage's response.

    Both observations must carry a response (`status` not None); a failed request is not a
    diff but a failure, which the verdict handles separately.
    """
    if measured.status is None or control.status is None:
        raise ValueError("compare_http needs two responses; a failed request is not comparable")
    proportion = body_proportion(measured, control)
    status_match = None if control.status // 100 == 5 else measured.status == control.status
    return HttpComparison(
        body_length_match=None if proportion is None else proportion > BODY_PROPORTION_THRESHOLD,
        body_proportion=proportion,
        status_code_match=status_match,
        headers_match=headers_match(measured, control),
        title_match=title_match(measured.title, control.title),
    )


def redirect_host(obs: HttpObservation) -> str | None:
    """The lowercased host a 3xx response redirects to (Location resolved against the URL)."""
    if obs.status is None or not 300 <= obs.status < 400:
        return None
    location = obs.header("location")
    if not location:
        return None
    host = urlsplit(urljoin(obs.url, location)).hostname
    return host.lower() if host else None
