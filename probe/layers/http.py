"""HTTP layer: one HTTP/1.1 GET over an established stream, with h11.

`fetch` records status, headers, title, body length and hash (body read capped) and the
time to first byte. `download` streams a bulk object and samples bytes over time for the
throughput check. Neither raises on a network failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

import h11

from probe import failures
from probe.clock import Clock
from probe.layers.stream import Stream
from probe.model import HttpObservation

MAX_HEADERS = 64
MAX_HEADER_VALUE = 512
BODY_SAMPLE = 4096
TITLE_SCAN = 65536
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


def request_target(url: str) -> tuple[str, str]:
    """(Host header, request target) for a URL.

    >>> request_target("https://www.facebook.com:8443/x?y=1")
    ('www.facebook.com:8443', '/x?y=1')
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.netloc.rpartition("@")[2], path


@lru_cache(maxsize=1024)
def _request(url: str, user_agent: str) -> h11.Request:
    """The GET for `url`; built (and validated by h11) once per URL, as a probe repeats it."""
    host, target = request_target(url)
    return h11.Request(
        method="GET",
        target=target,
        headers=[
            ("Host", host),
            ("User-Agent", user_agent),
            ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("Accept-Language", "en-US,en;q=0.5"),
            ("Connection", "close"),
        ],
    )


@dataclass
class _Response:
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_bytes: int = 0
    complete: bool = False
    first_byte: float | None = None


async def _exchange(
    stream: Stream,
    url: str,
    user_agent: str,
    clock: Clock,
    on_data: Callable[[bytes], bool],
    response: _Response,
) -> None:
    """Send a GET for `url` and feed body bytes to `on_data` until it returns False or the body ends."""
    conn = h11.Connection(h11.CLIENT)
    request = _request(url, user_agent)
    await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.recv()
            if response.first_byte is None and data:
                response.first_byte = clock.monotonic()
            if not data and response.status is None:
                raise EOFError("connection closed before the response")
            if not data and conn.their_state is h11.SEND_BODY and not _has_length(response):
                # A body delimited by the close of the connection ends here.
                response.complete = True
                return
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            response.status = event.status_code
            response.headers = [
                (k.decode("latin-1"), v.decode("latin-1")[:MAX_HEADER_VALUE])
                for k, v in list(event.headers.raw_items())[:MAX_HEADERS]
            ]
        elif isinstance(event, h11.Data):
            response.body_bytes += len(event.data)
            if not on_data(bytes(event.data)):
                return
        elif isinstance(event, h11.EndOfMessage):
            response.complete = True
            return
        elif isinstance(event, h11.ConnectionClosed):
            raise EOFError("connection closed before the response was complete")


def _has_length(response: _Response) -> bool:
    return any(k.lower() in ("content-length", "transfer-encoding") for k, _ in response.headers)


def _failure(exc: BaseException, response: _Response) -> str:
    if isinstance(exc, h11.RemoteProtocolError):
        return failures.HTTP_REQUEST_FAILED
    if isinstance(exc, EOFError) and response.status is None:
        return failures.EOF_ERROR
    return failures.classify(exc)


async def fetch(
    stream: Stream,
    url: str,
    address: str | None,
    user_agent: str,
    max_body: int,
    timeout: float,
    clock: Clock,
    origin: float,
) -> HttpObservation:
    """GET `url` over `stream` and describe the response."""
    start = clock.monotonic()
    response = _Response()
    digest = hashlib.sha256()
    head = bytearray()
    truncated = False

    hashed = 0

    def keep(data: bytes) -> bool:
        nonlocal hashed, truncated
        room = max_body - hashed
        if len(data) >= room:
            truncated = len(data) > room
            data = data[:room]
        digest.update(data)
        hashed += len(data)
        if len(head) < TITLE_SCAN:
            head.extend(data[: TITLE_SCAN - len(head)])
        return hashed < max_body

    failure: str | None = None
    try:
        async with asyncio.timeout(timeout):
            await _exchange(stream, url, user_agent, clock, keep, response)
    except TimeoutError:
        failure = failures.GENERIC_TIMEOUT
    except Exception as exc:  # every network error becomes data
        failure = _failure(exc, response)
    end = clock.monotonic()
    title_match = _TITLE.search(head)
    title = " ".join(title_match.group(1).decode("utf-8", "replace").split()) if title_match else None
    got_response = response.status is not None
    return HttpObservation(
        url=url,
        address=address,
        t0=start - origin,
        t=end - origin,
        failure=failure,
        status=response.status,
        headers=tuple(response.headers),
        title=title[:256] if title else None,
        body_length=hashed if got_response else None,
        body_sha256=digest.hexdigest() if got_response else None,
        body_truncated=truncated or (hashed >= max_body and not response.complete),
        ttfb=(response.first_byte - start) if response.first_byte is not None else None,
        body_sample=bytes(head[:BODY_SAMPLE]).decode("utf-8", "replace") if got_response else None,
    )


@dataclass
class Download:
    status: int | None
    bytes: int
    samples: list[tuple[float, int]]
    complete: bool
    failure: str | None


async def download(
    stream: Stream,
    url: str,
    user_agent: str,
    max_bytes: int,
    max_seconds: float,
    sample_interval: float,
    clock: Clock,
) -> Download:
    """Stream a bulk object; stop at `max_bytes` of body or `max_seconds` (not a failure).

    Samples are (seconds since the request, cumulative bytes read from the socket), taken at
    most every `sample_interval` seconds; the first is the first byte's arrival.
    """
    start = clock.monotonic()
    response = _Response()
    samples: list[tuple[float, int]] = []
    received = 0
    last = -sample_interval

    def tick(n: int) -> None:
        # Raw socket bytes: a throttled TLS stream trickles in far smaller pieces than a record.
        nonlocal received, last
        received += n
        now = clock.monotonic() - start
        if n and (not samples or now - last >= sample_interval):
            samples.append((round(now, 4), received))
            last = now

    def more(data: bytes) -> bool:
        return response.body_bytes < max_bytes

    stream.on_receive = tick
    failure: str | None = None
    try:
        async with asyncio.timeout(max_seconds):
            await _exchange(stream, url, user_agent, clock, more, response)
    except TimeoutError:
        pass  # our own cap: the samples so far are the measurement
    except Exception as exc:
        failure = _failure(exc, response)
    finally:
        stream.on_receive = None
    final = (round(clock.monotonic() - start, 4), received)
    if received and (not samples or samples[-1][1] != received):
        samples.append(final)
    if response.status is not None and response.status >= 400 and failure is None:
        failure = failures.HTTP_REQUEST_FAILED
    return Download(response.status, received, samples, response.complete, failure)
