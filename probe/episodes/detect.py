"""Episode detection with hysteresis, as an incremental state machine.

Per (vantage, target): an episode opens after `open_after` blocked verdicts in a row and
closes after `close_after` ok verdicts in a row; `inconclusive` and `target_down` are
skipped (they neither open nor close, nor break a run). With the default of 2, one lost
probe (a lone timeout between two oks) never makes an episode; and the run must agree on
the technique (verdict and failure), since a censor answers the same way every time while
random loss does not.

Per vantage: `vantage_down` verdicts make one vantage-shutdown episode (target None), not one
per target. It opens once some target has seen `open_after` `vantage_down` verdicts in a row
with nothing at the vantage working in between, and closes once some target has seen
`close_after` verdicts in a row that show the vantage working (ok, a block, target_down).
While the vantage is down, per-target detection is suspended: a block that was open stays
open, and measurements taken while the vantage was cut off say nothing about the target.

`Tracker.observe` is what the daemon calls as results arrive; `detect` runs the same
tracker over stored rows, so ``curfew analyze --rebuild`` finds what the daemon found live.

>>> from datetime import UTC, datetime, timedelta
>>> t = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)
>>> rows = [Observation("kz", "youtube", t + timedelta(minutes=5 * i), v)
...         for i, v in enumerate(["ok", "tls_blocked", "tls_blocked", "ok", "ok"])]
>>> [(e.started_at.strftime("%H:%M:%S"), e.ended_at.strftime("%H:%M:%S")) for e in detect(rows)]
[('14:02:30', '14:12:30')]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from probe.episodes.model import BLOCKED_VERDICTS, VANTAGE_DOWN, Episode, EpisodeEvent, Observation, midpoint

if TYPE_CHECKING:
    from probe.model import Result

DEFAULT_OPEN_AFTER = 2  # like the daemon's confirm_count
DEFAULT_CLOSE_AFTER = 2

Technique = tuple[str, str | None]


class _Detector:
    """Hysteresis for one scope: a (vantage, target), or a vantage (target None).

    Runs are counted per source (the target a verdict came from): for a target that is just
    itself; for a vantage it means one target's lost probes cannot open a shutdown, while a
    good verdict from any target resets every run, since it shows the vantage working.
    """

    def __init__(
        self, vantage: str, target: str | None, open_after: int, close_after: int, min_span: float = 0.0
    ) -> None:
        self.vantage = vantage
        self.target = target
        self.open_after = open_after
        self.close_after = close_after
        self.min_span = min_span
        self.run_started: datetime | None = None  # when the current run of agreeing dark verdicts began
        self.last_good: datetime | None = None
        self.first_bad: datetime | None = None  # first dark measurement since the last good one
        self.last_bad: datetime | None = None
        self.first_good: datetime | None = None  # first good measurement since the last bad one
        self.techniques: Counter[Technique] = Counter()
        self.probes = 0
        self.bad_runs: Counter[str] = Counter()
        self.good_runs: Counter[str] = Counter()
        self.run_technique: Technique | None = None  # what the current run of dark verdicts saw
        self.episode: Episode | None = None

    def bad(self, source: str, at: datetime, verdict: str, failure: str | None) -> list[EpisodeEvent]:
        if self.first_bad is None:
            self.first_bad = at
        self.last_bad = at if self.last_bad is None else max(self.last_bad, at)
        self.first_good = None
        self.good_runs.clear()
        self.techniques[(verdict, failure)] += 1
        self.probes += 1
        if self.episode is not None:
            self.episode = self._current(self.episode.onset_after)
            return [EpisodeEvent("updated", self.episode)]
        technique = (verdict, failure)
        if self.target is not None and self.run_technique != technique:
            # Censorship answers the same way every time; random loss does not (a DNS timeout,
            # then a reset): a change of technique starts the run again.
            self.bad_runs[source] = 0
            self.run_technique = technique
            self.run_started = None
        if self.run_started is None:
            self.run_started = at
        self.bad_runs[source] += 1
        if self.bad_runs[source] < self.open_after:
            return []
        if (at - self.run_started).total_seconds() < self.min_span:
            # Re-probes come seconds apart: two lost ones in a row are noise that a censor's
            # block outlasts. The run must also span `min_span` before it is an episode.
            return []
        self.bad_runs.clear()
        self.episode = self._current(self.last_good)
        return [EpisodeEvent("opened", self.episode)]

    def good(self, source: str, at: datetime) -> list[EpisodeEvent]:
        if self.episode is None:
            self.last_good = at if self.last_good is None else max(self.last_good, at)
            self._forget_dark()
            return []
        if self.first_good is None:
            self.first_good = at
        self.good_runs[source] += 1
        if self.good_runs[source] < self.close_after:
            return []
        assert self.last_bad is not None  # an open episode has seen a dark measurement
        closed = replace(
            self.episode,
            ended_at=midpoint(self.last_bad, self.first_good),
            offset_after=self.last_bad,
            offset_before=self.first_good,
        )
        self.episode = None
        self.last_good = at
        self._forget_dark()
        return [EpisodeEvent("closed", closed)]

    def _forget_dark(self) -> None:
        self.first_bad = None
        self.last_bad = None
        self.first_good = None
        self.techniques.clear()
        self.probes = 0
        self.bad_runs.clear()
        self.good_runs.clear()
        self.run_technique = None
        self.run_started = None

    def _current(self, onset_after: datetime | None) -> Episode:
        assert self.first_bad is not None
        # The dominant technique; on a tie, the one seen first (Counter keeps insertion order).
        (verdict, failure), _ = self.techniques.most_common(1)[0]
        return Episode(
            vantage=self.vantage,
            target=self.target,
            started_at=midpoint(onset_after, self.first_bad),
            ended_at=None,
            verdict=verdict,
            failure=failure,
            probes=self.probes,
            onset_after=onset_after,
            onset_before=self.first_bad,
        )


class Tracker:
    """Blackout episodes of every (vantage, target) and every vantage, updated one
    measurement at a time. Feed measurements in the order they started (the daemon's
    results are, to within a probe's runtime).

    >>> from datetime import UTC, datetime
    >>> tracker = Tracker()
    >>> t = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)
    >>> tracker.observe(Observation("kz", "youtube", t, "tls_blocked"))
    []
    >>> [e.kind for e in tracker.observe(Observation("kz", "youtube", t.replace(minute=1), "tls_blocked"))]
    ['opened']
    """

    def __init__(
        self,
        open_after: int = DEFAULT_OPEN_AFTER,
        close_after: int = DEFAULT_CLOSE_AFTER,
        min_span: float = 0.0,
    ) -> None:
        if open_after < 1 or close_after < 1 or min_span < 0:
            raise ValueError("open_after and close_after must be at least 1, min_span >= 0")
        self.open_after = open_after
        self.close_after = close_after
        self.min_span = min_span
        self._targets: dict[tuple[str, str], _Detector] = {}
        self._vantages: dict[str, _Detector] = {}

    def set_thresholds(self, open_after: int, close_after: int, min_span: float) -> None:
        """New hysteresis from the next measurement on (a reload of confirm_count or
        confirm_interval), for the runs under way too."""
        if open_after < 1 or close_after < 1 or min_span < 0:
            raise ValueError("open_after and close_after must be at least 1, min_span >= 0")
        self.open_after, self.close_after, self.min_span = open_after, close_after, min_span
        for detector in [*self._vantages.values(), *self._targets.values()]:
            detector.open_after, detector.close_after = open_after, close_after
            if detector.target is not None:
                detector.min_span = min_span

    def observe(self, item: Observation | Result) -> list[EpisodeEvent]:
        """Take one measurement; return the episodes it opened, updated or closed."""
        o = item if isinstance(item, Observation) else Observation.of(item)
        vantage = self._vantages.get(o.vantage)
        if vantage is None:
            vantage = self._vantages[o.vantage] = _Detector(
                o.vantage, None, self.open_after, self.close_after
            )
        if o.verdict == VANTAGE_DOWN:
            return vantage.bad(o.target, o.started_at, o.verdict, o.failure)
        if o.verdict == "inconclusive":
            return []
        events = vantage.good(o.target, o.started_at)  # ok, blocked, target_down: the vantage works
        if vantage.episode is not None:
            return events  # still down: suspended for the targets
        key = (o.vantage, o.target)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Detector(
                o.vantage, o.target, self.open_after, self.close_after, self.min_span
            )
        if o.verdict in BLOCKED_VERDICTS:
            events += target.bad(o.target, o.started_at, o.verdict, o.failure)
        elif o.verdict == "ok":
            events += target.good(o.target, o.started_at)
        return events

    def open_episodes(self) -> list[Episode]:
        """The episodes under way, vantage shutdowns first."""
        detectors = [*self._vantages.values(), *self._targets.values()]
        return [d.episode for d in detectors if d.episode is not None]


def detect(
    rows: Iterable[Observation],
    open_after: int = DEFAULT_OPEN_AFTER,
    close_after: int = DEFAULT_CLOSE_AFTER,
    min_span: float = 0.0,
) -> list[Episode]:
    """Every episode in `rows` (sorted here by start time), closed ones and those still open,
    each in its final state, in the order they opened."""
    tracker = Tracker(open_after, close_after, min_span)
    found: dict[tuple[str, str | None, datetime], Episode] = {}
    for row in sorted(rows, key=lambda r: r.started_at):
        for event in tracker.observe(row):
            found[event.episode.key] = event.episode
    return list(found.values())
