"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from probe.daemon import sdnotify
from probe.daemon.sdnotify import Watchdog


class Manager:
    """The service manager's end: a bound datagram socket that collects what the daemon sends."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name  # the value of $NOTIFY_SOCKET

    def receive(self, timeout: float = 10.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        self.sock.setblocking(False)
        out: list[str] = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield Manager(sock, str(path))


@pytest.fixture
def abstract_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    name = f"curfew-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield Manager(sock, "@" + name)


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (sdnotify.ready, "READY=1"),
        (sdnotify.stopping, "STOPPING=1"),
        (sdnotify.watchdog_ping, "WATCHDOG=1"),
        (lambda: sdnotify.status("probing 2 vantages x 5 targets"), "STATUS=probing 2 vantages x 5 targets"),
        (lambda: sdnotify.notify("READY=1\nSTATUS=up"), "READY=1\nSTATUS=up"),
    ],
)
def test_messages_arrive_verbatim_on_a_path_socket(
    manager: Manager, send: Callable[[], bool], expected: str
) -> None:
    assert send() is True
    assert manager.receive() == expected


def test_messages_arrive_on_an_abstract_socket(abstract_manager: Manager) -> None:
    assert abstract_manager.name.startswith("@")
    assert sdnotify.ready() is True
    assert abstract_manager.receive() == "READY=1"


def test_status_is_kept_to_one_line(manager: Manager) -> None:
    sdnotify.status("reload failed:\nvantages[0].resolver: bad port")
    assert manager.receive() == "STATUS=reload failed: vantages[0].resolver: bad port"


def test_reloading_carries_the_monotonic_clock_in_microseconds(manager: Manager) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = manager.receive().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.watchdog_ping() is False


@pytest.mark.parametrize("value", ["", "relative/path", "@", "vsock:2:1234"])
def test_unusable_notify_socket_values_are_ignored(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert sdnotify.ready() is False


def test_a_socket_nobody_listens_on_is_a_false_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.ready() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 60.0),
        ({"WATCHDOG_USEC": "1500000"}, 1.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "<self>"}, 60.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "<other>"}, None),  # inherited by a child
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "sixty"}, None),
        ({"WATCHDOG_USEC": ""}, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: float | None
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    pids = {"<self>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    for key, value in env.items():
        monkeypatch.setenv(key, pids.get(value, value))
    assert sdnotify.watchdog_interval() == expected


class Pings:
    """A stand-in for watchdog_ping that records when it was called."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self) -> bool:
        self.times.append(time.monotonic())
        return True

    def __len__(self) -> int:
        return len(self.times)


async def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Until `predicate()`; the timeout only bounds a failing run (a loaded machine can hold a
    20 ms timer for a second or more)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_watchdog_pings_the_manager_while_healthy(manager: Manager) -> None:
    watchdog = Watchdog(0.04, healthy=lambda: True)  # a ping every 20 ms
    received: list[str] = []

    def three_pings() -> bool:
        received.extend(manager.pending())
        return len(received) >= 3

    watchdog.start()
    try:
        await _wait_for(three_pings)
    finally:
        await watchdog.stop()
    assert set(received) == {"WATCHDOG=1"}
    assert not watchdog.running


async def test_watchdog_stops_pinging_when_unhealthy_and_resumes_when_healthy_again() -> None:
    healthy = True
    pings = Pings()
    watchdog = Watchdog(0.02, healthy=lambda: healthy, ping=pings)
    watchdog.start()
    try:
        await _wait_for(lambda: len(pings) >= 2)
        healthy = False  # the task is asleep between check and ping, never inside them
        wedged = len(pings)
        await asyncio.sleep(0.1)  # ten periods
        assert len(pings) == wedged
        healthy = True
        await _wait_for(lambda: len(pings) > wedged)
    finally:
        await watchdog.stop()


async def test_a_health_check_that_raises_counts_as_unhealthy() -> None:
    pings = Pings()
    checks: list[None] = []

    def broken() -> bool:
        checks.append(None)
        raise RuntimeError("bug")

    watchdog = Watchdog(0.02, healthy=broken, ping=pings)
    watchdog.start()
    try:
        await _wait_for(lambda: len(checks) >= 3)
        assert watchdog.running
    finally:
        await watchdog.stop()
    assert len(pings) == 0


async def test_stopped_watchdog_sends_nothing_more() -> None:
    pings = Pings()
    watchdog = Watchdog(0.02, healthy=lambda: True, ping=pings)
    watchdog.start()
    await _wait_for(lambda: len(pings) >= 1)
    await watchdog.stop()
    stopped = len(pings)
    await asyncio.sleep(0.05)
    assert len(pings) == stopped
    await watchdog.stop()  # idempotent


def test_watchdog_from_environment_follows_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    watchdog = Watchdog.from_environment(lambda: True)
    assert watchdog is not None and watchdog.interval == 60.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Watchdog.from_environment(lambda: True) is None


def test_watchdog_rejects_a_nonpositive_interval() -> None:
    with pytest.raises(ValueError):
        Watchdog(0, healthy=lambda: True)
