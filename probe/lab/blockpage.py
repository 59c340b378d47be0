"""What the censor answers to plain HTTP: a blockpage or a redirect to a warning page.

`BLOCKPAGE_FINGERPRINT` is the string the analysis fingerprint file should look for in the
body (location body, pattern type contains). The page imitates the bilingual notices of
Kazakh ISPs; the Russian line reads "Access to the resource is restricted".
"""

from __future__ import annotations

from probe.lab.origin import response_head

BLOCKPAGE_FINGERPRINT = "Access to this resource is restricted"
BLOCKPAGE_TITLE = "Доступ ограничен / Access restricted"
BLOCKPAGE_SERVER = "nginx"

_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    403: "Forbidden",
    451: "Unavailable For Legal Reasons",
}


def blockpage_body() -> bytes:
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{BLOCKPAGE_TITLE}</title></head>\n<body>\n"
        "<h1>Доступ к ресурсу ограничен</h1>\n"
        f"<p>{BLOCKPAGE_FINGERPRINT} in accordance with the legislation of the Republic of Kazakhstan.</p>\n"
        "</body></html>\n"
    ).encode()


def blockpage_response(status: int = 200) -> bytes:
    """A complete HTTP/1.1 response carrying the blockpage."""
    body = blockpage_body()
    headers = [
        ("Server", BLOCKPAGE_SERVER),
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    return response_head(status, _REASONS.get(status, "Blocked"), headers) + body


def redirect_response(location: str, status: int = 302) -> bytes:
    """A complete HTTP/1.1 redirect to `location` with an empty body."""
    headers = [
        ("Server", BLOCKPAGE_SERVER),
        ("Location", location),
        ("Content-Length", "0"),
        ("Connection", "close"),
    ]
    return response_head(status, _REASONS.get(status, "Redirect"), headers)
