"""Ask test helpers for the control: POST a THRequest to each configured helper in turn.

A helper that is dead, slow, refuses us or answers garbage never raises out of `ask`: the
attempt ends with a `reason` from the small fixed set `REASONS` (a metric label) and the next
helper is tried, all within one deadline. The answer's size is capped while it is read, so a
hostile or broken helper cannot make the probe buffer without end.

    client = HelperClient([HelperEndpoint("https://th.example.org/", token_file=Path("th.token"))])
    answer = await client.ask(THRequest(url, headers, endpoints), deadline=10.0)
    if answer.response is not None: ...   # else answer.attempts says who failed and why
    await client.aclose()
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import httpx

from probe import __version__
from probe.helper.answer import REASONS, Attempt, HelperAnswer, HelperEndpoint, Reason
from probe.helper.protocol import ProtocolError, THRequest, THResponse, dumps, parse_response

__all__ = [
    "REASONS",
    "Attempt",
    "HelperAnswer",
    "HelperClient",
    "HelperEndpoint",
    "Reason",
    "read_token",
]

MAX_ANSWER_BYTES: Final = 1 << 20
"""A real answer is a few kB; OONI's own helper caps bodies at 16 MiB, a probe needs far less."""
DEFAULT_TIMEOUT: Final = 15.0
"""Per helper: OONI's helper gives its own TCP/TLS and HTTP tasks 15 s each."""
USER_AGENT: Final = f"curfew/{__version__}"


class _Failed(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding whitespace dropped); ValueError if empty."""
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"{path}: the token file is empty")
    return token


class HelperClient:
    """Asks helpers in order (failover) over one pooled httpx client."""

    def __init__(
        self,
        helpers: Sequence[HelperEndpoint],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_ANSWER_BYTES,
        ca_bundle: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`timeout`: seconds one helper gets; `ca_bundle`: trust store for https:// helpers.

        Token files are read here, so a missing one is a start-up error, not a failed probe.
        """
        self.helpers = tuple(helpers)
        self._tokens = {h.url: read_token(h.token_file) for h in self.helpers if h.token_file is not None}
        self._timeout = timeout
        self._max_bytes = max_bytes
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle is not None else True
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            verify=verify,
            follow_redirects=False,  # a helper that redirects is misconfigured: say so
            # identity: the size cap then bounds what is held, with no decompression bomb to defuse
            headers={
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "Accept-Encoding": "identity",
            },
            trust_env=False,  # the control must not silently go through the vantage's proxy
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ask(self, request: THRequest, deadline: float | None = None) -> HelperAnswer:
        """The first helper's answer within `deadline` seconds (default: one `timeout` per helper)."""
        body = dumps(request)
        budget = deadline if deadline is not None else self._timeout * max(1, len(self.helpers))
        end = time.monotonic() + budget
        attempts: list[Attempt] = []
        for helper in self.helpers:
            remaining = end - time.monotonic()
            if remaining <= 0:
                attempts.append(Attempt(helper.label, "timeout", "no time left for this helper"))
                continue
            try:
                response = await self._post(helper, body, min(self._timeout, remaining))
            except _Failed as exc:
                attempts.append(Attempt(helper.label, exc.reason, exc.detail))
                continue
            return HelperAnswer(response, helper.label, tuple(attempts))
        return HelperAnswer(None, None, tuple(attempts))

    async def _post(self, helper: HelperEndpoint, body: bytes, timeout: float) -> THResponse:
        headers = {}
        token = self._tokens.get(helper.url)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(helper, body, headers, timeout)
        except TimeoutError:
            raise _Failed("timeout", f"no answer within {timeout:.1f} s") from None
        except httpx.TimeoutException:
            raise _Failed("timeout", f"no answer within {timeout:.1f} s") from None
        except httpx.HTTPError as exc:  # connect, read, protocol errors: the helper is not there
            raise _Failed("unreachable", f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise _Failed("unreachable", f"{type(exc).__name__}: {exc}") from None

    async def _exchange(
        self, helper: HelperEndpoint, body: bytes, headers: dict[str, str], timeout: float
    ) -> THResponse:
        async with self._client.stream(
            "POST", helper.url, content=body, headers=headers, timeout=timeout
        ) as resp:
            if resp.status_code != 200:
                raise _Failed("http_status", f"HTTP {resp.status_code}")
            length = resp.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self._max_bytes:
                raise _Failed("too_large", f"Content-Length {length} > {self._max_bytes}")
            encoding = resp.headers.get("content-encoding", "identity").lower()
            if encoding != "identity":
                raise _Failed("bad_answer", f"Content-Encoding {encoding} (identity was asked for)")
            data = bytearray()
            async for chunk in resp.aiter_raw():
                data += chunk
                if len(data) > self._max_bytes:
                    raise _Failed("too_large", f"more than {self._max_bytes} bytes")
        try:
            return parse_response(bytes(data))
        except ProtocolError as exc:
            raise _Failed("bad_answer", str(exc)) from None
