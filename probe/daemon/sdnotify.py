"""systemd's sd_notify protocol, without a dependency: tell the service manager how the daemon is doing.

Each message is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with ``@``). Outside systemd the
variable is unset and every call is a cheap no-op returning False, so the daemon calls these
unconditionally. Docker has no such socket; there the HEALTHCHECK does the watchdog's job.

The daemon's side of the contract with ``deploy/systemd/curfew.service``:

- ``ready()`` once the store is open and the metrics endpoint listens (``Type=notify`` waits for it);
- ``reloading()`` when SIGHUP starts a reload, then ``ready()`` when it is done, even if the new
  config was rejected and the old one kept (``Type=notify-reload`` on systemd >= 253 expects both);
- ``stopping()`` when SIGTERM starts the drain;
- a ``Watchdog`` pinging at half of ``watchdog_interval()`` while the daemon is healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

__all__ = [
    "Watchdog",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]


def _address(value: str) -> str | None:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # Linux abstract namespace: a leading NUL instead of the "@".
        return "\0" + value[1:]
    return None  # relative paths and systemd >= 254's vsock: addresses are not for us


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `message` (``KEY=VALUE`` lines) as one datagram to ``$NOTIFY_SOCKET``.

    Returns True when it was sent, False when the variable is unset (not under systemd), names
    no usable socket, or the send failed. Never raises for those: the daemon's work does not
    depend on systemd hearing it, and a failed watchdog ping shows up as a restart anyway.
    The send does not block: a full queue (a wedged manager) is a False, not a stalled event loop.

    >>> notify("READY=1", environ={})
    False
    """
    env = os.environ if environ is None else environ
    address = _address(env.get("NOTIFY_SOCKET", ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", env.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def ready() -> bool:
    """Start-up (or a reload) is complete: the service is up."""
    return notify("READY=1")


def reloading() -> bool:
    """A reload has begun; send ``ready()`` when it ends.

    Carries MONOTONIC_USEC, the time on CLOCK_MONOTONIC, which systemd >= 253 uses for
    ``Type=notify-reload`` to tell this reload from a stale one.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown has begun (the drain after SIGTERM)."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status curfew``; newlines are flattened."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_ping() -> bool:
    """Tell the manager the service is alive (resets the ``WatchdogSec=`` timer)."""
    return notify("WATCHDOG=1")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds within which systemd expects a watchdog ping, or None when there is no watchdog.

    Read from ``$WATCHDOG_USEC``; when ``$WATCHDOG_PID`` is set it must be this process's pid
    (the variables may have been inherited by a child that is not the service's main process).
    Ping at half of it.

    >>> watchdog_interval({"WATCHDOG_USEC": "60000000"})
    60.0
    >>> watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None  # not our pid
    True
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid is not None and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


class Watchdog:
    """Pings the systemd watchdog every `interval` / 2 seconds while `healthy()` returns True.

    `healthy` should tell whether the daemon is doing its work (for instance: the scheduler has
    started a round recently), not merely that the event loop runs; when it returns False (or
    raises) the ping is skipped, so systemd restarts a daemon that is alive but wedged. A loop
    that is blocked outright stops pinging on its own.

    In the daemon (``scheduler.is_progressing`` standing for whatever tells it is working)::

        watchdog = Watchdog.from_environment(healthy=scheduler.is_progressing)  # None: no watchdog
        if watchdog is not None:
            watchdog.start()
        try:
            ...
        finally:
            if watchdog is not None:
                await watchdog.stop()
    """

    def __init__(
        self,
        interval: float,
        healthy: Callable[[], bool],
        ping: Callable[[], bool] = watchdog_ping,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watchdog interval must be positive, got {interval}")
        self.interval = interval
        self._healthy = healthy
        self._ping = ping
        self._task: asyncio.Task[None] | None = None
        self._was_healthy = True

    @classmethod
    def from_environment(
        cls, healthy: Callable[[], bool], environ: Mapping[str, str] | None = None
    ) -> Watchdog | None:
        """A Watchdog for the interval systemd asked for (``WatchdogSec=``), or None if it asked for none."""
        interval = watchdog_interval(environ)
        return None if interval is None else cls(interval, healthy)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start pinging in a task on the running event loop (the first ping is immediate)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sd-watchdog")

    async def stop(self) -> None:
        """Stop pinging and wait for the task to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            healthy = self._is_healthy()
            if healthy:
                self._ping()
            if healthy != self._was_healthy:
                if healthy:
                    log.info("event=watchdog_healthy pinging=yes")
                else:
                    # systemd kills and restarts the service once WatchdogSec= passes without a ping.
                    log.warning("event=watchdog_unhealthy pinging=no")
                self._was_healthy = healthy
            await asyncio.sleep(self.interval / 2)

    def _is_healthy(self) -> bool:
        try:
            return bool(self._healthy())
        except Exception:
            log.exception("event=watchdog_check_failed pinging=no")
            return False
