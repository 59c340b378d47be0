"""Copy bytes between two streams, optionally rate-limited by a token bucket.

`TokenBucket` is pure (time is passed in); `pipe` moves bytes one way; `splice` runs both
directions until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


class TokenBucket:
    """Allow `rate` bytes per second with at most `burst` bytes saved up.

    >>> bucket = TokenBucket(rate=1000, burst=100, now=0.0)
    >>> bucket.delay(100, now=0.0), bucket.delay(50, now=0.0)
    (0.0, 0.05)
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def delay(self, size: int, now: float) -> float:
        """Take `size` bytes; return how long to wait before sending them."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= size
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def chunk_for(rate_bps: int) -> int:
    """A chunk size giving about 50 writes a second (smooth), between 256 B and 16 KiB."""
    return max(256, min(16 * 1024, rate_bps // 8 // 50))


async def pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    rate_bps: int | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Copy until EOF, then half-close `writer`; throttle to `rate_bps` bits/s if given."""
    chunk = 64 * 1024
    bucket = None
    if rate_bps is not None:
        chunk = chunk_for(rate_bps)
        bucket = TokenBucket(rate_bps / 8, chunk, monotonic())
    try:
        while data := await reader.read(chunk):
            if bucket is not None:
                wait = bucket.delay(len(data), monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        pass  # one side went away; splice closes both


async def splice(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    down_rate_bps: int | None = None,
) -> None:
    """Relay both ways until both directions end or one side fails; then close both."""
    up = asyncio.ensure_future(pipe(client[0], server[1]))
    down = asyncio.ensure_future(pipe(server[0], client[1], down_rate_bps))
    try:
        # When the server is done sending, the exchange is over (responses end with close).
        await asyncio.wait({down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        for task in (up, down):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for _, writer in (client, server):
            writer.close()
        for _, writer in (client, server):
            # Let TLS close_notify and the transport teardown finish before returning.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
