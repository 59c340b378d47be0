"""What an episode is: a stretch of time in which a target (or a whole vantage) was dark.

Every time is UTC. Onset and offset are known only to lie between two measurements: the
last good and the first bad one (`onset_after`, `onset_before`), the last bad and the first
good one (`offset_after`, `offset_before`). `started_at` and `ended_at` are the midpoints,
so the error of either is at most half the gap, and re-probing on a change narrows the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from probe.model import Result

BLOCKED_VERDICTS: Final = frozenset(
    {"dns_blocked", "tcp_blocked", "tls_blocked", "tls_mitm", "http_blocked", "throttled"}
)
"""Verdicts that say the target itself is blocked at the vantage."""

VANTAGE_DOWN: Final = "vantage_down"

Scope = Literal["target", "vantage"]
EventKind = Literal["opened", "updated", "closed"]


@dataclass(frozen=True)
class Observation:
    """The part of one measurement that episodes are made of."""

    vantage: str
    target: str
    started_at: datetime  # UTC
    verdict: str
    failure: str | None = None

    @classmethod
    def of(cls, result: Result) -> Observation:
        m, a = result.measurement, result.analysis
        return cls(m.vantage, m.target, m.started_at, a.verdict, a.failure)


def midpoint(after: datetime | None, before: datetime) -> datetime:
    """The middle of the interval a change happened in; `before` when nothing came earlier."""
    return before if after is None else after + (before - after) / 2


@dataclass(frozen=True)
class Episode:
    """One blackout: of `target` at `vantage`, or of the whole vantage when `target` is None.

    `verdict` and `failure` are the technique seen most often in it; `probes` counts the
    measurements that saw it dark. `ended_at` and the offset bounds are None while it lasts;
    `onset_after` is None when the first measurement ever seen was already dark.
    """

    vantage: str
    target: str | None
    started_at: datetime
    ended_at: datetime | None
    verdict: str
    failure: str | None
    probes: int
    onset_after: datetime | None
    onset_before: datetime
    offset_after: datetime | None = None
    offset_before: datetime | None = None

    @property
    def scope(self) -> Scope:
        return "vantage" if self.target is None else "target"

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @property
    def key(self) -> tuple[str, str | None, datetime]:
        """The episode's identity: its place and its first dark measurement, which never
        change once it is open, so a live update and a rebuild name the same episode."""
        return (self.vantage, self.target, self.onset_before)


@dataclass(frozen=True)
class EpisodeEvent:
    """`opened` once hysteresis confirms it, `updated` as more dark probes come in, `closed`
    once it is over (with `ended_at` and the offset bounds set)."""

    kind: EventKind
    episode: Episode
