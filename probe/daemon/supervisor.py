"""One supervisor for the daemon's background tasks (migration, inventory sync, retention,
watch planning, ...): none of them can take the daemon down, or its shutdown with it.

Each task is a named coroutine function run in its own asyncio task. When an attempt raises,
the supervisor logs it (one ``event=background-task-failed`` line for the first failure of a
run of failures, and again only if the reason changes), counts it in
``curfew_background_task_failures_total{task}``, and tries again after a backoff that doubles
from `initial_backoff` to `max_backoff`; the first success after failures logs
``event=background-task-recovered``. An attempt that outlives its `timeout` (a database that
accepts connections and never answers) counts as a failure too. `stop()` cancels everything
and returns within its timeout, whatever the tasks do; an exception never leaves the
supervisor.

    supervisor = Supervisor()
    metrics.registry.register(supervisor)            # the failure counter, 0 for every task
    supervisor.every("retention", 3600, apply_retention)
    migrated = supervisor.once("migration", migrate)  # retried until it succeeds
    ...
    await supervisor.stop(timeout=5)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from prometheus_client.metrics_core import CounterMetricFamily, Metric

log = logging.getLogger("curfew.supervisor")

T = TypeVar("T")
Body = Callable[[], Awaitable[None]]

FAILURES = "curfew_background_task_failures"
FAILURES_HELP = "Failed attempts of a daemon background task (each is retried with backoff)."


def _reason(exc: BaseException) -> str:
    """One token for a log line: the exception's type and text, spaces folded."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) and not str(exc):
        text = "timed_out"
    return "_".join(f"{type(exc).__name__}:{text}".split())[:200]


class Supervisor:
    """Runs named background tasks with logging, counting and retries; see the module doc."""

    def __init__(self, *, initial_backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        if initial_backoff <= 0 or max_backoff < initial_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pokes: dict[str, asyncio.Event] = {}
        self._failures: Counter[str] = Counter()
        self._lock = threading.Lock()  # collect() runs in the metrics server's thread

    # -- starting tasks ---------------------------------------------------------------------------

    def every(self, name: str, interval: float, body: Body, *, timeout: float | None = None) -> None:
        """Run `body` now and then every `interval` seconds; a failed run is retried with
        backoff (never later than the next regular run). Replaces a task of the same name."""

        async def loop() -> None:
            while True:
                await self._attempts(name, body, timeout, cap=interval)
                await asyncio.sleep(interval)

        self._start(name, loop())

    def once(self, name: str, body: Body, *, timeout: float | None = None) -> asyncio.Task[None]:
        """Run `body` until one attempt succeeds; the returned task ends then (await it, or
        check `.done()`, to know). Replaces (cancels) a task of the same name."""
        return self._start(name, self._attempts(name, body, timeout, cap=self.max_backoff))

    def _start(self, name: str, coro: Awaitable[None]) -> asyncio.Task[None]:
        old = self._tasks.get(name)
        if old is not None:
            old.cancel()
        with self._lock:
            self._failures.setdefault(name, 0)  # the series exists, at 0, from the start
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"curfew-{name}")
        self._tasks[name] = task
        return task

    async def _attempts(self, name: str, body: Body, timeout: float | None, cap: float) -> None:
        """Attempt `body` until it returns; between failures sleep with doubling backoff."""
        backoff = self.initial_backoff
        failed = 0
        last_reason = ""
        while True:
            try:
                if timeout is None:
                    await body()
                else:
                    await asyncio.wait_for(body(), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed += 1
                with self._lock:
                    self._failures[name] += 1
                reason = _reason(exc)
                delay = min(backoff, cap)
                if reason != last_reason:
                    # Once per run of failures (and when the reason changes), not once a retry:
                    # a database down for hours is one line here; the counter keeps the count.
                    log.warning(
                        "event=background-task-failed task=%s attempt=%d retry_in=%.1fs reason=%s",
                        name,
                        failed,
                        delay,
                        reason,
                    )
                    last_reason = reason
                poke = self._pokes.setdefault(name, asyncio.Event())
                poke.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poke.wait(), delay)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if failed:
                log.info("event=background-task-recovered task=%s failures=%d", name, failed)
            return

    def poke(self, *names: str) -> None:
        """Retry these tasks now if they are waiting out a backoff (what they waited for, the
        database, is back)."""
        for name in names:
            event = self._pokes.get(name)
            if event is not None:
                event.set()

    # -- state and metrics -------------------------------------------------------------------------

    def failures(self, name: str) -> int:
        with self._lock:
            return self._failures[name]

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def collect(self) -> Iterator[Metric]:
        """The prometheus_client collector protocol: register with `registry.register(self)`."""
        family = CounterMetricFamily(FAILURES, FAILURES_HELP, labels=["task"])
        with self._lock:
            for name, count in sorted(self._failures.items()):
                family.add_metric([name], float(count))
        yield family

    # -- stopping ----------------------------------------------------------------------------------

    async def stop(self, timeout: float) -> list[str]:
        """Cancel every task and wait at most `timeout` seconds for them to end; returns the
        names of those that did not (a task that swallows cancellation), which are left behind."""
        tasks = {task: name for name, task in self._tasks.items() if not task.done()}
        for task in tasks:
            task.cancel()
        stuck: set[asyncio.Task[None]] = set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            if task.done() and not task.cancelled():
                with contextlib.suppress(BaseException):
                    task.exception()  # retrieved: no "exception was never retrieved" at exit
        names = sorted(tasks[t] for t in stuck)
        if names:
            log.warning("event=background-tasks-abandoned tasks=%s", ",".join(names))
        return names


async def in_thread(fn: Callable[[], T], name: str) -> T:
    """Call blocking `fn` in a daemon thread and await its result.

    Unlike `asyncio.to_thread`, a call that never returns (a driver waiting on a database that
    does not answer) cannot hold up the process's exit: the interpreter does not wait for daemon
    threads. Cancelling the await abandons the thread.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: object) -> None:
        if future.done():
            return  # the await was cancelled: nobody wants it
        if ok:
            future.set_result(value)  # type: ignore[arg-type]
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)

    def target() -> None:
        try:
            result: object = fn()
        except BaseException as exc:
            ok, result = False, exc
        else:
            ok = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody wants it
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=target, name=f"curfew-{name}", daemon=True).start()
    return await future
