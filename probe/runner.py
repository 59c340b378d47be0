"""Running a top-level coroutine: on uvloop where it is installed (less CPU per probe), else
on asyncio's own loop. For the commands and for the lab's worker processes alike, which is
why it lives here and not with the command line."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion in a new event loop and return its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
