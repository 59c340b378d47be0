"""The probe schedule on APScheduler 3 (AsyncIOScheduler): one interval job per
(vantage, target), spread across its interval, plus one-off confirmation re-probes after a
change of verdict. The scheduling maths lives in `probe.daemon.schedule`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from probe.config import Config
from probe.daemon import watch
from probe.daemon.prober import Prober
from probe.daemon.schedule import Confirmation, advance, first_run_delay
from probe.episodes.pattern import Schedule
from probe.model import Result

log = logging.getLogger("curfew.scheduler")

Pair = tuple[str, str]
# A run may take the probe's total deadline plus its controls'; past this it is abandoned.
RUN_MARGIN = 5.0


def _job_id(kind: str, pair: Pair) -> str:
    return f"{kind}:{pair[0]}:{pair[1]}"


def pairs_of(config: Config) -> dict[Pair, float]:
    """Every configured (vantage, target) with its interval in seconds."""
    return {(v.name, t.name): t.interval or config.interval for v in config.vantages for t in config.targets}


class Scheduler:
    def __init__(
        self,
        prober: Prober,
        on_results: Callable[[list[Result]], None],
        on_lag: Callable[[float], None] = lambda _: None,
    ) -> None:
        self.prober = prober
        self.on_results = on_results
        self.on_lag = on_lag
        self.config = prober.config
        self.states: dict[Pair, Confirmation] = {}
        self._running: set[Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._intervals: dict[Pair, float] = {}
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._aps.add_listener(self._submitted, EVENT_JOB_SUBMITTED)

    def _submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            lag = (datetime.now(UTC) - event.scheduled_run_times[-1]).total_seconds()
            self.on_lag(max(0.0, lag))

    def start(self) -> None:
        self.apply(self.config)
        self._aps.start()

    def healthy(self) -> bool:
        """For the watchdog: the scheduler is running and its jobs still fire.

        A job whose next run is far in the past means the loop has stopped getting through
        the schedule; the watchdog then stops pinging and systemd restarts us.
        """
        if not self._aps.running:
            return False
        now = datetime.now(UTC)
        slack = timedelta(seconds=max(60.0, 2 * self.config.probe.timeouts.total))
        for job in self._aps.get_jobs():
            if job.next_run_time is not None and now - job.next_run_time > slack:
                return False
        return True

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def apply(self, config: Config) -> None:
        """Make the jobs match `config`: add new pairs, drop removed ones, re-time changed ones."""
        self.config = config
        self.prober.swap(config)
        wanted = pairs_of(config)
        now = time.time()
        for pair in list(self._intervals):
            if pair not in wanted:
                for kind in ("probe", "confirm"):
                    job = self._aps.get_job(_job_id(kind, pair))
                    if job is not None:
                        job.remove()
                for job in self._aps.get_jobs():
                    if job.id.startswith(_job_id("watch", pair) + ":"):
                        job.remove()
                del self._intervals[pair]
                self.states.pop(pair, None)
        for pair, interval in wanted.items():
            if self._intervals.get(pair) == interval:
                continue
            start = datetime.fromtimestamp(now + first_run_delay(now, *pair, interval), UTC)
            self._aps.add_job(
                self._run,
                IntervalTrigger(seconds=interval, start_date=start, timezone=UTC),
                args=[pair],
                id=_job_id("probe", pair),
                replace_existing=True,
            )
            self._intervals[pair] = interval
        log.info("event=schedule pairs=%d", len(wanted))

    def plan_watch(self, schedules: Sequence[Schedule], now: datetime, horizon: float = 2 * 3600.0) -> int:
        """Watch the predicted edges of recurring blackouts in the next `horizon` seconds.

        Each predicted onset or offset (`probe.daemon.watch.edges`) gets one interval job that
        probes the pair every `confirm_interval` from `margin` before to `margin` after it: the
        onset is then known to within half a confirm_interval instead of half the base
        interval. One job per edge, not per instant, keeps 10,000 pairs cheap. Returns how
        many windows were (re)planned; planning twice replaces the same jobs.
        """
        planned = 0
        end = now + timedelta(seconds=horizon)
        for pair in self._intervals:
            mine = watch.for_pair(schedules, *pair)
            for schedule in mine:
                zone_day = now.astimezone(ZoneInfo(schedule.zone)).date()
                for offset in (-1, 0, 1):
                    predicted = watch.edges(schedule, zone_day + timedelta(days=offset))
                    for edge in predicted or ():
                        if not now - timedelta(seconds=watch.DEFAULT_MARGIN) <= edge <= end:
                            continue
                        self._watch_window(pair, edge)
                        planned += 1
        return planned

    def _watch_window(self, pair: Pair, edge: datetime) -> None:
        margin = timedelta(seconds=watch.DEFAULT_MARGIN)
        start = max(edge - margin, datetime.now(UTC) + timedelta(seconds=1))
        self._aps.add_job(
            self._run,
            IntervalTrigger(
                seconds=self.config.confirm_interval, start_date=start, end_date=edge + margin, timezone=UTC
            ),
            args=[pair],
            id=f"watch:{pair[0]}:{pair[1]}:{int(edge.timestamp())}",
            replace_existing=True,
        )

    def _confirm_later(self, pair: Pair) -> None:
        when = datetime.now(UTC) + timedelta(seconds=self.config.confirm_interval)
        self._aps.add_job(
            self._run,
            DateTrigger(run_date=when),
            args=[pair],
            id=_job_id("confirm", pair),
            replace_existing=True,
        )

    async def _run(self, pair: Pair) -> None:
        if pair in self._running or pair not in self._intervals:
            log.info("event=skip vantage=%s target=%s reason=already-running", *pair)
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(pair)
        self._tasks.add(task)
        try:
            deadline = self.config.probe.timeouts.total * 2 + RUN_MARGIN
            try:
                results = await asyncio.wait_for(self.prober.run(*pair), timeout=deadline)
            except TimeoutError:
                log.warning("event=run-abandoned vantage=%s target=%s deadline=%.0fs", *pair, deadline)
                return
            except asyncio.CancelledError:
                # Only drain cancels a run (past the grace period): nothing was completed.
                log.info("event=run-cancelled vantage=%s target=%s", *pair)
                return
            self.on_results(results)
            if not results or (results[0].measurement.vantage, results[0].measurement.target) != pair:
                return  # the pair's probe failed on this machine (Prober.run): no verdict to confirm
            verdict = results[0].analysis.verdict
            before = self.states.get(pair, Confirmation())
            after = advance(before, verdict, self.config.confirm_count)
            self.states[pair] = after
            if after.confirming:
                self._confirm_later(pair)
            if after.confirmed != before.confirmed and before.confirmed is not None:
                log.info(
                    "event=verdict-change vantage=%s target=%s from=%s to=%s",
                    *pair,
                    before.confirmed,
                    verdict,
                )
        finally:
            self._running.discard(pair)
            self._tasks.discard(task)

    async def drain(self, grace: float) -> int:
        """Stop scheduling; let runs in flight finish for `grace` seconds, then cancel them.

        Returns how many runs were cancelled.
        """
        # Pause first: shutting the executor down would cancel the runs we mean to wait for.
        if self._aps.running:
            self._aps.pause()
        still: set[asyncio.Task[None]] = set()
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if self._aps.running:
            self._aps.shutdown(wait=False)
        return len(still)
