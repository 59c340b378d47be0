"""The agenda, pure: which (vantage, target) probes are due when.

One implementation for both clocks. `curfew run` asks it, through an APScheduler trigger
(`probe.daemon.scheduler.AgendaTrigger`), when each pair fires next on the wall clock;
`curfew lab simulate` asks it for the next instant and the pairs due then on the virtual
clock. Three reasons make a pair due, all on the pair's own grid:

- **base**: every `interval` seconds, at `anchor` + the pair's spread offset
  (`probe.daemon.schedule.spread_offset`) so a thousand pairs do not all fire at :00;
- **confirm**: `confirm_interval` after a run whose verdict is a change not yet seen
  `confirm_count` times (`probe.daemon.schedule.advance`); at most one pending per pair,
  a later one replaces it;
- **watch**: every `confirm_interval` within `watch_margin` of the predicted onsets and
  offsets of the pair's inferred schedules (`probe.daemon.watch`), as planned last.

Times are unix seconds (floats, rounded to the microsecond so instants that should meet do).
Nothing here reads a clock: the caller says what time it is.

    agenda = Agenda.from_config(config)                 # the daemon: anchor 0, spread
    when = agenda.next_due(("kz-almaty", "facebook"), after=now)
    agenda.record(("kz-almaty", "facebook"), "tls_blocked", at=now)   # may add a confirmation
    agenda.plan_watch(schedules, begin=now, end=now + 7200)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from probe.config import Config
from probe.daemon import watch
from probe.daemon.schedule import Confirmation, advance, spread_offset
from probe.episodes.pattern import Schedule

Pair = tuple[str, str]

BASE = "base"
CONFIRM = "confirm"
WATCH = "watch"


EPS = 1e-6
"""Instants closer than this are the same instant: a time that went through a datetime
(APScheduler's) is rounded to the microsecond."""


def _t(x: float) -> float:
    return round(x, 6)


def grid_next(after: float, step: float, phase: float, *, inclusive: bool) -> float:
    """The first instant phase + k * step at or after (`inclusive`) / strictly after `after`.

    >>> grid_next(100.0, 60.0, 10.0, inclusive=True), grid_next(130.0, 60.0, 10.0, inclusive=True)
    (130.0, 130.0)
    >>> grid_next(130.0, 60.0, 10.0, inclusive=False)
    190.0
    >>> grid_next(130.0000004, 60.0, 10.0, inclusive=True)  # the same instant, rounded
    130.0
    """
    if inclusive:
        return _t(phase + math.ceil((after - EPS - phase) / step) * step)
    return _t(phase + (math.floor((after + EPS - phase) / step) + 1) * step)


@dataclass(frozen=True)
class Due:
    """An instant and the pairs due at it, in the agenda's pair order, with why."""

    when: float
    pairs: tuple[Pair, ...]
    kinds: Mapping[Pair, frozenset[str]]

    @property
    def confirmations(self) -> int:
        return sum(1 for p in self.pairs if CONFIRM in self.kinds[p])

    @property
    def watch_only(self) -> int:
        """Pairs due for a watch window and for nothing else."""
        return sum(1 for p in self.pairs if self.kinds[p] == {WATCH})


class Agenda:
    """Due instants of every configured pair; see the module docstring."""

    def __init__(
        self,
        intervals: Mapping[Pair, float],
        *,
        confirm_interval: float,
        confirm_count: int,
        anchor: float = 0.0,
        spread: bool = True,
        watch_margin: float = watch.DEFAULT_MARGIN,
    ) -> None:
        if confirm_interval <= 0 or confirm_count < 1 or watch_margin < 0:
            raise ValueError("confirm_interval must be > 0, confirm_count >= 1, watch_margin >= 0")
        self.anchor = anchor
        self.spread = spread
        self.watch_margin = watch_margin
        self.states: dict[Pair, Confirmation] = {}
        self._confirm_at: dict[Pair, float] = {}
        self._watch: dict[Pair, list[float]] = {}
        self._intervals: dict[Pair, float] = {}
        self._phase: dict[Pair, float] = {}
        self.configure(intervals, confirm_interval=confirm_interval, confirm_count=confirm_count)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        anchor: float = 0.0,
        spread: bool = True,
        watch_margin: float = watch.DEFAULT_MARGIN,
    ) -> Agenda:
        return cls(
            intervals_of(config),
            confirm_interval=config.confirm_interval,
            confirm_count=config.confirm_count,
            anchor=anchor,
            spread=spread,
            watch_margin=watch_margin,
        )

    def configure(
        self, intervals: Mapping[Pair, float], *, confirm_interval: float, confirm_count: int
    ) -> None:
        """Take a new set of pairs and settings (a reload): removed pairs are forgotten, kept
        pairs keep their confirmation state and watch instants."""
        self.confirm_interval = confirm_interval
        self.confirm_count = confirm_count
        for pair in list(self._intervals):
            if pair not in intervals:
                del self._intervals[pair], self._phase[pair]
                self.states.pop(pair, None)
                self._confirm_at.pop(pair, None)
                self._watch.pop(pair, None)
        for pair, interval in intervals.items():
            if interval <= 0:
                raise ValueError(f"interval of {pair} must be > 0")
            self._intervals[pair] = interval
            offset = spread_offset(*pair, interval) if self.spread else 0.0
            self._phase[pair] = self.anchor + offset

    @property
    def pairs(self) -> tuple[Pair, ...]:
        return tuple(self._intervals)

    def interval(self, pair: Pair) -> float:
        return self._intervals[pair]

    # -- when ------------------------------------------------------------------------------

    def next_due(self, pair: Pair, after: float, *, inclusive: bool = False) -> float | None:
        """The pair's next due instant at/after `after`; None for a pair not on the agenda."""
        interval = self._intervals.get(pair)
        if interval is None:
            return None
        best = grid_next(after, interval, self._phase[pair], inclusive=inclusive)
        confirm = self._confirm_at.get(pair)
        pending = confirm is not None and (confirm > after + EPS or (inclusive and confirm >= after - EPS))
        if pending and confirm is not None and confirm < best:
            best = confirm
        instants = self._watch.get(pair)
        if instants:
            edge = after - EPS if inclusive else after + EPS
            i = bisect.bisect_left(instants, edge) if inclusive else bisect.bisect_right(instants, edge)
            if i < len(instants) and instants[i] < best:
                best = instants[i]
        return best

    def kinds(self, pair: Pair, when: float) -> frozenset[str]:
        """Why the pair is due at `when` (empty: it is not)."""
        interval = self._intervals.get(pair)
        if interval is None:
            return frozenset()
        out = set()
        if abs(grid_next(when, interval, self._phase[pair], inclusive=True) - when) <= EPS:
            out.add(BASE)
        confirm = self._confirm_at.get(pair)
        if confirm is not None and abs(confirm - when) <= EPS:
            out.add(CONFIRM)
        instants = self._watch.get(pair, [])
        i = bisect.bisect_left(instants, when - EPS)
        if i < len(instants) and abs(instants[i] - when) <= EPS:
            out.add(WATCH)
        return frozenset(out)

    def next(self, after: float, *, inclusive: bool = False) -> Due:
        """The earliest instant at/after `after` at which any pair is due, and every pair due
        then (a virtual clock jumps from one to the next)."""
        times = {pair: self.next_due(pair, after, inclusive=inclusive) for pair in self._intervals}
        if not times:
            raise ValueError("the agenda has no pairs")
        when = min(t for t in times.values() if t is not None)
        pairs = tuple(p for p, t in times.items() if t == when)
        return Due(when, pairs, {p: self.kinds(p, when) for p in pairs})

    # -- what happened ---------------------------------------------------------------------

    def record(self, pair: Pair, verdict: str, at: float) -> Confirmation:
        """A run of `pair` finished at `at` with `verdict`: advance its confirmation state and,
        while a change is being confirmed, make it due again `confirm_interval` later."""
        before = self.states.get(pair, Confirmation())
        after = advance(before, verdict, self.confirm_count)
        if pair not in self._intervals:
            return after
        self.states[pair] = after
        if after.confirming:
            self._confirm_at[pair] = _t(at + self.confirm_interval)
        else:
            self._confirm_at.pop(pair, None)
        return after

    def plan_watch(self, schedules: Sequence[Schedule], begin: float, end: float) -> dict[Pair, int]:
        """Replace every pair's watch instants in [`begin`, `end`) with those of `schedules`.

        Planning the same span twice gives the same instants. Returns, for each pair that
        got any, how many predicted edges (onsets and offsets) it watches in the span.
        """
        start, stop = datetime.fromtimestamp(begin, UTC), datetime.fromtimestamp(end, UTC)
        planned: dict[Pair, int] = {}
        for pair in self._intervals:
            mine = watch.for_pair(schedules, *pair)
            kept = [t for t in self._watch.get(pair, []) if not begin <= t < end]
            fresh: list[float] = []
            if mine:
                times = watch.watch_times(
                    mine,
                    start,
                    stop,
                    confirm_interval=self.confirm_interval,
                    margin=self.watch_margin,
                    phase=self._phase[pair],
                )
                fresh = [_t(t.timestamp()) for t in times]
                if fresh:
                    planned[pair] = len(watch.watched_edges(mine, start, stop, self.watch_margin))
            merged = sorted(set(kept) | set(fresh))
            if merged:
                self._watch[pair] = merged
            else:
                self._watch.pop(pair, None)
        return planned

    def forget_before(self, when: float) -> None:
        """Drop watch instants before `when` (they can no longer be due)."""
        for pair, instants in list(self._watch.items()):
            i = bisect.bisect_left(instants, when)
            if i:
                del instants[:i]
            if not instants:
                del self._watch[pair]


def intervals_of(config: Config) -> dict[Pair, float]:
    """Every configured (vantage, target) with its interval in seconds, in config order."""
    return {(v.name, t.name): t.interval or config.interval for v in config.vantages for t in config.targets}
