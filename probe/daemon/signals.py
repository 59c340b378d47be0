"""The daemon's signals, caught from the first moment of `curfew run`.

SIGHUP's default action is to terminate the process, and the daemon spends its first second
importing libraries before an event loop exists: `catch_early()` (called first thing, before
those imports; standard library only) records SIGHUP, SIGTERM and SIGINT in flags, and
`Signals.attach()` then moves them onto the event loop and replays whatever arrived before.
Handlers only set events; the daemon's main function does the work.
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_early: set[int] = set()


def _record(signum: int, _frame: FrameType | None) -> None:
    _early.add(signum)


def catch_early() -> None:
    """Record SIGHUP/SIGTERM/SIGINT instead of dying of them, until `Signals.attach()`."""
    for sig in (signal.SIGHUP, *STOP_SIGNALS):
        signal.signal(sig, _record)


class Signals:
    """`stop` is set by SIGTERM/SIGINT, `reload` by SIGHUP."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.reload = asyncio.Event()

    def attach(self) -> None:
        """Handle the signals on the running loop; replay those caught early."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload.set)
        if _early & set(STOP_SIGNALS):
            self.stop.set()
        if signal.SIGHUP in _early:
            self.reload.set()
        _early.clear()

    def detach(self) -> None:
        """Back to recording (not dying) once the loop is about to go away."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, *STOP_SIGNALS):
            loop.remove_signal_handler(sig)
        catch_early()
