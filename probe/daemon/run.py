"""`curfew run`: the daemon's whole life, top to bottom.

signals -> load config -> open the journal -> migrate, sync and restore in the background (READY
waits for them at most `STARTUP_BOUND`) -> serve metrics -> start scheduler -> READY -> wait for
a signal (SIGHUP reloads, SIGTERM/SIGINT stop) -> drain in-flight probes -> flush and close, each
step bounded -> exit 0.

Signal handlers only set events; the work happens here. Every background task runs under one
`Supervisor` (probe.daemon.supervisor): its failures are logged, counted and retried and never
reach the shutdown, which is bounded by `grace_period` + `CLOSE_BUDGET` whatever the database
does (and `EXIT_BOUND` more as a last resort: see `run`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from probe.config import Config, ConfigError, load_config, reload_changes
from probe.daemon import sdnotify
from probe.daemon.prober import Prober
from probe.daemon.scheduler import Scheduler, pairs_of
from probe.daemon.signals import Signals
from probe.daemon.supervisor import Supervisor, in_thread
from probe.episodes.monitor import Monitor
from probe.metrics import Metrics, MetricsServer, serve_metrics
from probe.metrics.blackouts import BlackoutCollector
from probe.metrics.control import ControlFailureCollector
from probe.metrics.journal import JournalCollector
from probe.model import Result
from probe.redaction import redact_url
from probe.store import Store, StoreError, blackouts, migrate
from probe.store.engine import create_engine

log = logging.getLogger("curfew.daemon")
T = TypeVar("T")

RETENTION_EVERY = 3600.0
WATCH_EVERY = 3600.0
STARTUP_BOUND = 10.0
"""Seconds READY waits for the database (migration, episode restore); past it the daemon
probes and journals, and the database catches up when it answers (systemd's
TimeoutStartSec=60 must never see a stuck start)."""
INVENTORY_TIMEOUT = 30.0
RETENTION_TIMEOUT = 600.0
WATCH_TIMEOUT = 60.0
CLOSE_BUDGET = 8.0
"""Seconds after the drain for closing everything (tasks, episodes, journal, metrics). With
the drain's 1 s and the exit's bound, a stop takes at most `grace_period` + 13 s: 43 s for
the default 30 s, within the unit's TimeoutStopSec=45."""
EXIT_BOUND = 3.0
"""Seconds after ``event=stopped`` before the process exits anyway (a driver stuck on a
database that never answers must not hold the exit)."""


def _token(exc: BaseException) -> str:
    return "_".join((str(exc) or type(exc).__name__).split())[:200]


class Daemon:
    def __init__(self, config_path: Path, config: Config, signals: Signals | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.signals = signals or Signals()
        self.supervisor = Supervisor()
        self.migration: asyncio.Task[None] | None = None
        self.monitor: Monitor | None = None
        self.server: MetricsServer | None = None

    @property
    def stop(self) -> asyncio.Event:
        return self.signals.stop

    @property
    def reload(self) -> asyncio.Event:
        return self.signals.reload

    async def run(self) -> int:
        self.signals.attach()
        config = self.config
        store = await Store.open(config.database_url, config.data_dir / "spool", schema=self._schema_ready)
        store.set_zones(config)
        metrics = Metrics()
        metrics.registry.register(self.supervisor)
        scheduler = None
        prober: Prober | None = None
        watchdog = None
        zones = {v.name: v.timezone for v in config.vantages}
        monitor = Monitor(
            zones,
            open_after=config.confirm_count,
            close_after=config.confirm_count,
            min_span=config.episode_min_span,
        )
        monitor.set_config(zones, pairs_of(config))
        episodes_engine = create_engine(config.database_url)
        try:
            self.migration = self.supervisor.once("migration", self._migrate)
            self.migration.add_done_callback(self._migrated)
            self._sync_inventory(store)
            await self._restore(monitor, episodes_engine)
            # Only the seed uses it: its idle connection (a thread too, for SQLite) goes now, not
            # at stop. Disposed again at stop, for a seed that timed out and returns one late.
            await self._bounded("episodes-engine", episodes_engine.dispose(), 1.0)
            metrics.registry.register(BlackoutCollector(lambda: monitor.snapshot(datetime.now(UTC))))
            metrics.set_pairs(pairs_of(config))
            metrics.set_spool_source(lambda: store.spooled)
            metrics.set_write_errors_source(lambda: store.write_errors)
            metrics.registry.register(JournalCollector(store))
            self.server = await serve_metrics(metrics, *config.metrics.host_port)

            def record(results: list[Result]) -> None:
                for result in results:
                    store.submit(result)
                    metrics.observe(result)
                    events = monitor.observe(result)
                    if events:  # onto the measurements' journal, in order with them
                        store.submit_episodes(events)
                    m, a = result.measurement, result.analysis
                    log.info(
                        "event=measurement vantage=%s target=%s verdict=%s operation=%s failure=%s "
                        "runtime=%.3f",
                        m.vantage,
                        m.target,
                        a.verdict,
                        a.operation or "-",
                        (a.failure or "-").replace(" ", "_"),
                        m.runtime,
                    )

            prober = Prober(config, on_local_failure=metrics.observe_local_failure)
            metrics.registry.register(ControlFailureCollector(prober.control_failures.snapshot))
            scheduler = Scheduler(prober, record, metrics.observe_scheduler_lag)
            scheduler.start()
            self.supervisor.every(
                "retention", RETENTION_EVERY, lambda: self._retention(store), timeout=RETENTION_TIMEOUT
            )
            self.supervisor.every(
                "watch", WATCH_EVERY, lambda: self._watch(scheduler, monitor), timeout=WATCH_TIMEOUT
            )
            watchdog = sdnotify.Watchdog.from_environment(scheduler.healthy)
            if watchdog is not None:
                watchdog.start()
            sdnotify.ready()
            sdnotify.status(f"probing {len(pairs_of(config))} pairs")
            log.info(
                "event=ready pairs=%d database=%s metrics=%s",
                len(pairs_of(config)),
                redact_url(config.database_url),
                config.metrics.listen,
            )
            self.monitor = monitor
            await self._serve(scheduler, store, metrics)
        finally:
            # Nothing here may raise or wait unbounded: every step is cut at its share of the
            # budget, and what a cut step left is on disk (the journal) for the next start.
            sdnotify.stopping()
            if watchdog is not None:
                # STOPPING=1 is said; systemd stops expecting pings (TimeoutStopSec rules now).
                await self._bounded("watchdog", watchdog.stop(), 1.0)
            grace = self.config.grace_period
            log.info("event=stopping grace=%.0fs", grace)
            cancelled = 0
            if scheduler is not None:
                cancelled = await self._bounded("drain", scheduler.drain(grace), grace + 1.0) or 0
            # One budget for everything after the drain; the store's flush gets what is left.
            clock = asyncio.get_running_loop().time
            deadline = clock() + CLOSE_BUDGET

            def share(cap: float) -> float:
                return max(0.1, min(cap, deadline - clock() - 1.0))  # 1 s kept for the metrics

            await self.supervisor.stop(timeout=share(1.0))
            await self._bounded("episodes-engine", episodes_engine.dispose(), share(1.0))
            if prober is not None:
                await self._bounded("helpers", prober.aclose(), share(1.0))
            budget = share(CLOSE_BUDGET)  # the flush gives up in time; the rest is the close
            await self._bounded("store", store.close(timeout=max(budget - 1.0, 0.1)), budget)
            if self.server is not None:
                await self._bounded("metrics", self.server.close(), max(0.1, deadline - clock()))
            self.signals.detach()
            log.info("event=stopped cancelled_runs=%d spooled=%d", cancelled, store.spooled)
        return 1 if store.lost else 0  # measurements lost (named in an error line by the store)

    async def _bounded(self, step: str, work: Awaitable[T], timeout: float) -> T | None:
        """Await `work` for at most `timeout` seconds; log and return None if it fails or is cut.

        Not `asyncio.wait_for`: that waits for the cancelled work to finish, and work stuck
        on a socket that never answers may never finish.
        """
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            log.warning("event=stop-step-abandoned step=%s after=%.1fs", step, timeout)
            return None
        if task.cancelled():
            return None
        exc = task.exception()
        if exc is not None:
            log.warning("event=stop-step-failed step=%s reason=%s", step, _token(exc))
            return None
        return task.result()

    # -- the database, in the background ------------------------------------------------------------

    async def _schema_ready(self) -> None:
        """For the store's writer: no write before the schema is at head."""
        if self.migration is None or not self.migration.done() or self.migration.cancelled():
            raise StoreError("the schema is not migrated yet")

    async def _migrate(self) -> None:
        url = self.config.database_url
        await in_thread(lambda: migrate.upgrade(url), "migration")

    def _migrated(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            # The database is back: what waited for it need not wait out its backoff.
            self.supervisor.poke("inventory", "retention")

    async def _after_migration(self) -> None:
        """Return once the schema is at head; raise `StoreError` at once while the database is
        unavailable (the migration has failed and is being retried)."""
        assert self.migration is not None
        while not self.migration.done():
            if self.supervisor.failures("migration"):
                raise StoreError("the database is unavailable")
            await self._wait_briefly(self.migration)
        if self.migration.cancelled():
            raise StoreError("the migration was cancelled")

    async def _wait_briefly(self, task: asyncio.Task[None]) -> bool:
        done, _ = await asyncio.wait({task}, timeout=0.1)
        return bool(done)

    def _sync_inventory(self, store: Store) -> None:
        """(Re)start syncing the vantages and targets of the current config, once the schema
        is migrated; retried by the supervisor while the database is unavailable."""
        config = self.config

        async def sync() -> None:
            await self._after_migration()
            await asyncio.wait_for(store.sync_inventory(config), INVENTORY_TIMEOUT)

        store.set_zones(config)
        self.supervisor.once("inventory", sync)

    async def _restore(self, monitor: Monitor, engine: AsyncEngine) -> None:
        """Seed the episode monitor from the database before probing starts, within
        `STARTUP_BOUND` (or until a stop signal); otherwise start without it. Never later: a
        late seed would replay old measurements after new ones."""

        async def restore() -> None:
            await self._after_migration()
            async with engine.connect() as conn:
                await blackouts.restore(conn, monitor, datetime.now(UTC))

        task = asyncio.ensure_future(restore())
        stop = asyncio.ensure_future(self.stop.wait())
        done, _ = await asyncio.wait({task, stop}, timeout=STARTUP_BOUND, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if task in done and task.exception() is None:
            return
        reason = "timed_out" if task not in done else _token(task.exception() or Exception())
        if task not in done:
            task.cancel()
        log.warning("event=episodes-not-restored reason=%s", reason)

    # -- serving ------------------------------------------------------------------------------------

    async def _serve(self, scheduler: Scheduler, store: Store, metrics: Metrics) -> None:
        while not self.stop.is_set():
            stop = asyncio.ensure_future(self.stop.wait())
            reload = asyncio.ensure_future(self.reload.wait())
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reload.cancel()
            if self.reload.is_set() and not self.stop.is_set():
                self.reload.clear()
                await self._reload(scheduler, store, metrics)

    async def _reload(self, scheduler: Scheduler, store: Store, metrics: Metrics) -> None:
        sdnotify.reloading()
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("event=reload-rejected reason=%s", str(exc).replace(" ", "_"))
            sdnotify.ready()
            return
        changes = reload_changes(self.config, config)
        try:
            scheduler.apply(changes.config)
        except OSError as exc:  # ssl.SSLError: a CA bundle OpenSSL refuses (load_config never asks it)
            log.error("event=reload-rejected reason=%s", _token(exc))
            sdnotify.ready()
            return
        for key in changes.refused:
            log.warning("event=reload-key-refused key=%s reason=restart-only kept=running-value", key)
        config = changes.config
        moved = config.metrics.listen != self.config.metrics.listen or self.server is None
        if moved and not await self._rebind(metrics, config):
            if "metrics" in changes.applied:
                changes.applied.remove("metrics")
            config = config.model_copy(update={"metrics": self.config.metrics})
        self.config = config
        metrics.set_pairs(pairs_of(config))
        zones = {v.name: v.timezone for v in config.vantages}
        if self.monitor is not None:
            self.monitor.set_config(zones, pairs_of(config))
            self.monitor.set_thresholds(config.confirm_count, config.confirm_count, config.episode_min_span)
        self._sync_inventory(store)
        log.info(
            "event=reloaded pairs=%d changed=%s",
            len(pairs_of(config)),
            ",".join(changes.applied) or "-",
        )
        sdnotify.ready()

    async def _rebind(self, metrics: Metrics, config: Config) -> bool:
        """Serve the metrics on the new `metrics.listen`; False (old one kept) if it cannot."""
        old = self.server
        host, port = config.metrics.host_port
        try:
            self.server = await serve_metrics(metrics, host, port)
        except OSError:
            # The new address may overlap the old one (same port, another host): free it first.
            if old is not None:
                await self._bounded("metrics", old.close(), 1.0)
            try:
                self.server = await serve_metrics(metrics, host, port)
            except OSError as exc:
                log.error(
                    "event=reload-key-refused key=metrics.listen reason=%s kept=%s",
                    _token(exc),
                    self.config.metrics.listen,
                )
                self.server = await self._serve_or_none(metrics)
                return False
            return True
        if old is not None:
            await self._bounded("metrics", old.close(), 1.0)
        return True

    async def _serve_or_none(self, metrics: Metrics) -> MetricsServer | None:
        """The metrics back on their old address after a refused move; None, logged, if even
        that is gone (taken while it was free): probing goes on, and the next SIGHUP tries again."""
        host, port = self.config.metrics.host_port
        try:
            return await serve_metrics(metrics, host, port)
        except OSError as exc:
            log.error(
                "event=metrics-unserved listen=%s reason=%s retry=next-reload",
                self.config.metrics.listen,
                _token(exc),
            )
            return None

    # -- periodic work ------------------------------------------------------------------------------

    async def _watch(self, scheduler: Scheduler, monitor: Monitor) -> None:
        """Plan dense probing around the next predicted onsets and offsets (every hour)."""
        now = datetime.now(UTC)
        schedules = monitor.snapshot(now).schedules
        if schedules:
            planned = scheduler.plan_watch(schedules, now, horizon=2 * WATCH_EVERY)
            log.info("event=watch-planned schedules=%d windows=%d", len(schedules), planned)

    async def _retention(self, store: Store) -> None:
        days = self.config.retention_days
        if days > 0:
            await self._after_migration()
            deleted = await store.apply_retention(datetime.now(UTC) - timedelta(days=days))
            if deleted:
                log.info("event=retention deleted=%d", deleted)


def _exit_anyway(code: int) -> None:
    """The last resort after ``event=stopped``: a thread stuck in a database driver."""
    log.warning("event=exit-forced after=%.0fs", EXIT_BOUND)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


async def run(config_path: Path, signals: Signals | None = None, config: Config | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; raises ConfigError for a bad config.

    `config`: the file as already loaded (and checked, and its data_dir locked) by the caller;
    loading it again could pick up an edit made in between and run on another data_dir than
    the one locked. SIGHUP re-reads `config_path`.
    """
    if config is None:
        config = load_config(config_path)
    code = await Daemon(config_path, config, signals).run()
    # The event loop's shutdown waits for worker threads and tasks; one stuck on a database
    # that never answers would hold the exit for as long as the driver waits.
    timer = threading.Timer(EXIT_BOUND, _exit_anyway, args=(code,))
    timer.daemon = True
    timer.start()
    return code
