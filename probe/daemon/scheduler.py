"""The probe schedule on APScheduler 3 (AsyncIOScheduler), driven by the agenda.

One job per (vantage, target) whose trigger (`AgendaTrigger`) asks `probe.daemon.agenda`
when the pair is next due: its base slots spread across the interval, the confirmation
re-probe after a change of verdict, and the watch windows around predicted onsets and
offsets. `lab simulate` drives the very same agenda on a virtual clock, so what the lab
measures is what the daemon schedules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from probe.config import Config
from probe.daemon.agenda import Agenda, Pair, intervals_of
from probe.daemon.prober import Prober, own_result
from probe.daemon.schedule import Confirmation
from probe.episodes.pattern import Schedule
from probe.model import Result

log = logging.getLogger("curfew.scheduler")

# A run may take the probe's total deadline plus its controls'; past this it is abandoned.
RUN_MARGIN = 5.0


def _job_id(pair: Pair) -> str:
    return f"probe:{pair[0]}:{pair[1]}"


def pairs_of(config: Config) -> dict[Pair, float]:
    """Every configured (vantage, target) with its interval in seconds."""
    return intervals_of(config)


class AgendaTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler's view of one pair on the agenda: the next due instant after the last."""

    __slots__ = ("agenda", "pair")

    def __init__(self, agenda: Agenda, pair: Pair) -> None:
        self.agenda = agenda
        self.pair = pair

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is None:
            at = self.agenda.next_due(self.pair, now.timestamp(), inclusive=True)
        else:
            at = self.agenda.next_due(self.pair, previous_fire_time.timestamp())
        return None if at is None else datetime.fromtimestamp(at, UTC)

    def __str__(self) -> str:
        return f"agenda[{self.pair[0]}:{self.pair[1]}]"


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
        self.agenda = Agenda.from_config(self.config)
        self._running: set[Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._intervals: dict[Pair, float] = {}
        # max_instances 2: a pair due again while its run is still going (a probe longer than
        # its interval) reaches `_run`, which logs the skip as `event=skip ... reason=
        # already-running`. With 1, APScheduler refuses it itself, with an unstructured warning.
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None},
        )
        self._aps.add_listener(self._submitted, EVENT_JOB_SUBMITTED)

    @property
    def states(self) -> dict[Pair, Confirmation]:
        """Each pair's confirmation state (kept by the agenda)."""
        return self.agenda.states

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
        if config is not self.prober.config:  # at start the prober was built from this very config
            self.prober.swap(config)  # first: it raises for a config it cannot take, and nothing changed
        self.config = config
        wanted = pairs_of(config)
        self.agenda.configure(
            wanted, confirm_interval=config.confirm_interval, confirm_count=config.confirm_count
        )
        for pair in list(self._intervals):
            if pair not in wanted:
                job = self._aps.get_job(_job_id(pair))
                if job is not None:
                    job.remove()
                del self._intervals[pair]
        for pair, interval in wanted.items():
            if self._intervals.get(pair) == interval:
                continue
            self._aps.add_job(
                self._run,
                AgendaTrigger(self.agenda, pair),
                args=[pair],
                id=_job_id(pair),
                replace_existing=True,
            )
            self._intervals[pair] = interval
        log.info("event=schedule pairs=%d", len(wanted))

    def _retime(self, pair: Pair, now: float) -> None:
        """Tell APScheduler the pair's next due instant changed (a confirmation, a watch window)."""
        at = self.agenda.next_due(pair, now, inclusive=True)
        job = self._aps.get_job(_job_id(pair))
        if at is not None and job is not None:
            job.modify(next_run_time=datetime.fromtimestamp(at, UTC))

    def plan_watch(self, schedules: Sequence[Schedule], now: datetime, horizon: float = 2 * 3600.0) -> int:
        """Watch the predicted edges of recurring blackouts in the next `horizon` seconds.

        The agenda makes each pair concerned due every `confirm_interval` within its margin of
        each predicted onset or offset (`probe.daemon.watch`): the onset is then known to
        within half a confirm_interval instead of half the base interval. Returns how many
        windows were (re)planned; planning twice gives the same instants.
        """
        begin = now.timestamp()
        self.agenda.forget_before(begin)
        planned = self.agenda.plan_watch(schedules, begin, begin + horizon)
        for pair in planned:
            self._retime(pair, max(begin, time.time()))
        return sum(planned.values())

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
            own = own_result(pair, results)
            if own is None:
                return  # the pair's probe failed on this machine (Prober.run): no verdict to confirm
            verdict = own.analysis.verdict
            before = self.agenda.states.get(pair, Confirmation())
            now = time.time()
            after = self.agenda.record(pair, verdict, now)
            if after.confirming:
                self._retime(pair, now)
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
