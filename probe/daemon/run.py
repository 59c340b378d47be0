"""`curfew run`: the daemon's whole life, top to bottom.

load config -> open store -> serve metrics -> start scheduler -> READY -> wait for a signal
(SIGHUP reloads, SIGTERM/SIGINT stop) -> drain in-flight probes -> flush the store -> exit 0.
Signal handlers only set events; the work happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probe.config import Config, ConfigError, load_config
from probe.daemon import sdnotify
from probe.daemon.prober import Prober
from probe.daemon.scheduler import Scheduler, pairs_of
from probe.episodes.monitor import Monitor
from probe.metrics import Metrics, serve_metrics
from probe.metrics.blackouts import BlackoutCollector
from probe.metrics.control import ControlFailureCollector
from probe.metrics.journal import JournalCollector
from probe.model import Result
from probe.redaction import redact_url
from probe.store import Store, blackouts
from probe.store.engine import create_engine

log = logging.getLogger("curfew.daemon")
RETENTION_EVERY = 3600.0
WATCH_EVERY = 3600.0


class Daemon:
    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.stop = asyncio.Event()
        self.reload = asyncio.Event()
        self.monitor: Monitor | None = None
        self.episode_writer: blackouts.BlackoutWriter | None = None

    def handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload.set)

    async def run(self) -> int:
        config = self.config
        self.handle_signals()
        store = await Store.open(config.database_url, config.data_dir / "spool")
        metrics = Metrics()
        server = None
        scheduler = None
        prober: Prober | None = None
        watchdog = None
        retention = None
        watcher = None
        zones = {v.name: v.timezone for v in config.vantages}
        monitor = Monitor(
            zones,
            open_after=config.confirm_count,
            close_after=config.confirm_count,
            min_span=config.episode_min_span,
        )
        monitor.set_config(zones, pairs_of(config))
        episodes_engine = create_engine(config.database_url)
        episode_writer: blackouts.BlackoutWriter | None = None
        try:
            try:
                await store.sync_inventory(config)
                async with episodes_engine.connect() as conn:
                    await blackouts.restore(conn, monitor, datetime.now(UTC))
            except Exception as exc:  # the database may be down at start: probing goes on, spooled
                log.warning("event=database-unavailable-at-start reason=%s", str(exc).replace(" ", "_")[:200])
            episode_writer = blackouts.BlackoutWriter(episodes_engine, zones)
            metrics.registry.register(BlackoutCollector(lambda: monitor.snapshot(datetime.now(UTC))))
            metrics.set_pairs(pairs_of(config))
            metrics.set_spool_source(lambda: store.spooled)
            metrics.set_write_errors_source(lambda: store.write_errors)
            metrics.registry.register(JournalCollector(store))
            server = await serve_metrics(metrics, *config.metrics.host_port)

            def record(results: list[Result]) -> None:
                for result in results:
                    store.submit(result)
                    metrics.observe(result)
                    if episode_writer is not None:
                        episode_writer.submit(monitor.observe(result))
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
            retention = asyncio.ensure_future(self._retention(store))
            watcher = asyncio.ensure_future(self._watch(scheduler, monitor))
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
            self.monitor, self.episode_writer = monitor, episode_writer
            await self._serve(scheduler, store, metrics)
        finally:
            sdnotify.stopping()
            if watchdog is not None:
                # STOPPING=1 is said; systemd stops expecting pings (TimeoutStopSec rules now).
                await watchdog.stop()
            log.info("event=stopping grace=%.0fs", config.grace_period)
            cancelled = await scheduler.drain(self.config.grace_period) if scheduler is not None else 0
            for task in (retention, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if episode_writer is not None:
                await episode_writer.close()  # one last flush of pending episodes
            await episodes_engine.dispose()
            if prober is not None:
                await prober.aclose()
            await store.close()
            if server is not None:
                await server.close()
            log.info("event=stopped cancelled_runs=%d spooled=%d", cancelled, store.spooled)
        return 1 if store.lost else 0  # measurements lost (named in an error line by the store)

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
        self.config = config
        scheduler.apply(config)
        metrics.set_pairs(pairs_of(config))
        zones = {v.name: v.timezone for v in config.vantages}
        if self.monitor is not None:
            self.monitor.set_config(zones, pairs_of(config))
        if self.episode_writer is not None:
            self.episode_writer.zones = zones
        try:
            await store.sync_inventory(config)
        except Exception as exc:  # the database may be down: the inventory is synced next time
            log.warning("event=inventory-sync-failed reason=%s", str(exc).replace(" ", "_")[:200])
        log.info("event=reloaded pairs=%d", len(pairs_of(config)))
        sdnotify.ready()

    async def _watch(self, scheduler: Scheduler, monitor: Monitor) -> None:
        """Every hour, plan dense probing around the next predicted onsets and offsets."""
        while True:
            now = datetime.now(UTC)
            schedules = monitor.snapshot(now).schedules
            if schedules:
                planned = scheduler.plan_watch(schedules, now, horizon=2 * WATCH_EVERY)
                log.info("event=watch-planned schedules=%d windows=%d", len(schedules), planned)
            await asyncio.sleep(WATCH_EVERY)

    async def _retention(self, store: Store) -> None:
        while True:
            days = self.config.retention_days
            if days > 0:
                deleted = await store.apply_retention(datetime.now(UTC) - timedelta(days=days))
                if deleted:
                    log.info("event=retention deleted=%d", deleted)
            await asyncio.sleep(RETENTION_EVERY)


async def run(config_path: Path) -> int:
    """Run the daemon until SIGTERM/SIGINT; raises ConfigError for a bad config."""
    config = load_config(config_path)
    return await Daemon(config_path, config).run()
