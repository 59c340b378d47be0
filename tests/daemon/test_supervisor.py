"""The supervisor of the daemon's background tasks, in process: what an operator reads in the
log and the metrics when a task fails, and that nothing a task does can break the stop."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from prometheus_client import CollectorRegistry

from probe.daemon.supervisor import Supervisor, in_thread


class Flaky:
    """Fails `failures` times with `error`, then succeeds; counts its calls."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.left = failures
        self.error = error or ConnectionRefusedError(111, "Connection refused")
        self.calls = 0
        self.succeeded = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        if self.left:
            self.left -= 1
            raise self.error
        self.succeeded.set()


def failure_lines(caplog: pytest.LogCaptureFixture, task: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"task={task} " in r.getMessage() + " "]


async def test_a_failing_task_is_logged_once_counted_and_retried_until_it_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    registry = CollectorRegistry()
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.02)
    registry.register(supervisor)
    body = Flaky(failures=4)
    task = supervisor.once("migration", body)
    await asyncio.wait_for(task, 5)
    assert body.calls == 5
    assert registry.get_sample_value("curfew_background_task_failures_total", {"task": "migration"}) == 4
    lines = failure_lines(caplog, "migration")
    # One line for the run of four identical failures, one for the recovery.
    assert len(lines) == 2, lines
    assert lines[0].startswith("event=background-task-failed task=migration attempt=1 ")
    assert "reason=ConnectionRefusedError:[Errno_111]_Connection_refused" in lines[0]
    assert lines[1] == "event=background-task-recovered task=migration failures=4"
    await supervisor.stop(timeout=1)


async def test_a_new_reason_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.01)
    reasons = iter([OSError("refused"), OSError("refused"), TimeoutError(), RuntimeError("bug")])

    async def body() -> None:
        error = next(reasons, None)
        if error is not None:
            raise error

    await asyncio.wait_for(supervisor.once("inventory", body), 5)
    failed = [line for line in failure_lines(caplog, "inventory") if "failed" in line]
    assert [line.split("reason=")[1] for line in failed] == [
        "OSError:refused",
        "TimeoutError:timed_out",
        "RuntimeError:bug",
    ]
    assert supervisor.failures("inventory") == 4


async def test_known_tasks_export_zero_before_any_failure() -> None:
    registry = CollectorRegistry()
    supervisor = Supervisor()
    registry.register(supervisor)
    gate = asyncio.Event()
    supervisor.every("retention", 3600, gate.wait)
    assert registry.get_sample_value("curfew_background_task_failures_total", {"task": "retention"}) == 0
    assert await supervisor.stop(timeout=1) == []


async def test_a_periodic_task_runs_again_after_its_interval_and_retries_sooner_after_a_failure() -> None:
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=10)
    body = Flaky(failures=2)
    runs: list[int] = []

    async def counted() -> None:
        await body()
        runs.append(body.calls)

    # The interval (0.05 s) caps the backoff (10 s) of a periodic task: retries come at most
    # one interval apart.
    supervisor.every("retention", 0.05, counted)
    for _ in range(500):
        if len(runs) >= 2:
            break
        await asyncio.sleep(0.01)
    await supervisor.stop(timeout=1)
    assert runs[:2] == [3, 4]
    assert supervisor.failures("retention") == 2


async def test_an_attempt_that_never_returns_times_out_and_counts_as_a_failure() -> None:
    supervisor = Supervisor(initial_backoff=0.01, max_backoff=0.01)
    calls = 0

    async def black_hole() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # a database that accepts and never answers

    await asyncio.wait_for(supervisor.once("inventory", black_hole, timeout=0.05), 5)
    assert calls == 2
    assert supervisor.failures("inventory") == 1


async def test_stop_is_bounded_even_when_a_task_ignores_cancellation() -> None:
    supervisor = Supervisor()
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # a misbehaving body: swallows the cancel

    supervisor.once("watch", stubborn)
    supervisor.once("migration", asyncio.Event().wait)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await supervisor.stop(timeout=0.2) == ["watch"]
    assert loop.time() - started < 2
    release.set()  # let it end, so the test leaves nothing running
    await asyncio.sleep(0.01)


async def test_starting_a_task_again_replaces_the_old_one() -> None:
    supervisor = Supervisor()
    first = supervisor.once("inventory", asyncio.Event().wait)
    second = supervisor.once("inventory", asyncio.Event().wait)
    await asyncio.sleep(0)
    assert first.cancelled()
    assert not second.done()
    assert await supervisor.stop(timeout=1) == []
    assert second.cancelled()


async def test_in_thread_returns_raises_and_never_blocks_the_exit() -> None:
    assert await in_thread(lambda: 42, "answer") == 42
    with pytest.raises(ZeroDivisionError):
        await in_thread(lambda: 1 // 0, "bug")
    stuck = threading.Event()
    waiting = asyncio.ensure_future(in_thread(stuck.wait, "stuck"))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    (thread,) = [t for t in threading.enumerate() if t.name == "curfew-stuck"]
    assert thread.daemon  # the interpreter's exit does not wait for it
    stuck.set()
    thread.join(5)


async def test_a_poke_cuts_the_backoff_short() -> None:
    supervisor = Supervisor(initial_backoff=30, max_backoff=30)
    body = Flaky(failures=1)
    supervisor.once("inventory", body)
    for _ in range(100):
        if body.calls:
            break
        await asyncio.sleep(0.01)
    assert body.calls == 1  # failed; the next attempt is 30 s away
    supervisor.poke("inventory", "not-a-task")
    await asyncio.wait_for(body.succeeded.wait(), 5)
    assert body.calls == 2
    await supervisor.stop(timeout=1)
