"""Start `curfew helper` in-process on loopback, and talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from probe.helper.server import RunningHelper, serve_helper
from probe.helper.settings import HelperFile


@asynccontextmanager
async def helper(
    probe: dict[str, Any] | None = None, tls: dict[str, Any] | None = None, **keys: Any
) -> AsyncIterator[RunningHelper]:
    """A helper on 127.0.0.1 and a free port; `keys` are its `helper:` section."""
    keys.setdefault("listen", "127.0.0.1:0")
    data: dict[str, Any] = {"helper": keys}
    if probe is not None:
        data["probe"] = probe
    if tls is not None:
        data["tls"] = tls
    settings = HelperFile.model_validate(data)
    running = await serve_helper(settings)
    try:
        yield running
    finally:
        await running.close()


async def post(
    running: RunningHelper, body: bytes, headers: dict[str, str] | None = None, timeout: float = 20.0
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        return await client.post(running.url, content=body, headers=headers or {})
