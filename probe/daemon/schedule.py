"""Scheduling maths, pure: where in its interval a pair fires, and when a change of verdict
calls for re-probing.

Onset and offset of a blackout lie between the last good and the first bad sample; with a
5-minute interval that is up to 5 minutes of doubt. Re-probing at `confirm_interval` as
soon as the verdict changes, until the new state has been seen `confirm_count` times in
a row, pins both ends to within `confirm_interval` and keeps one lost probe from counting
as a change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def spread_offset(vantage: str, target: str, interval: float) -> float:
    """Seconds into each interval at which this pair fires: stable across restarts, uniform
    across pairs, so a thousand probes do not all go out at :00.

    >>> spread_offset("kz-almaty", "facebook", 300) == spread_offset("kz-almaty", "facebook", 300)
    True
    >>> 0 <= spread_offset("kz-almaty", "facebook", 300) < 300
    True
    """
    digest = hashlib.sha256(f"{vantage}\0{target}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * interval


def first_run_delay(now: float, vantage: str, target: str, interval: float) -> float:
    """Seconds from `now` (unix time) to the pair's next slot on its interval grid.

    The grid is anchored at the epoch, so the slot does not depend on when the daemon
    started: restarts keep each pair's phase.

    >>> first_run_delay(1000.0, "v", "t", 60) < 60
    True
    """
    offset = spread_offset(vantage, target, interval)
    return (offset - now) % interval


@dataclass(frozen=True)
class Confirmation:
    """Where a pair stands: its confirmed verdict and a candidate being confirmed."""

    confirmed: str | None = None
    candidate: str | None = None
    seen: int = 0

    @property
    def confirming(self) -> bool:
        return self.candidate is not None


def advance(state: Confirmation, verdict: str, confirm_count: int) -> Confirmation:
    """The state after one more verdict; re-probe soon while the result is `confirming`.

    >>> s = advance(Confirmation(), "ok", 2)          # the first verdict is taken as is
    >>> s.confirmed, s.confirming
    ('ok', False)
    >>> s = advance(s, "tls_blocked", 2)              # a change: confirm it
    >>> s.confirmed, s.candidate, s.confirming
    ('ok', 'tls_blocked', True)
    >>> advance(s, "tls_blocked", 2).confirmed        # seen twice: confirmed
    'tls_blocked'
    >>> advance(s, "ok", 2).confirming                # one lost probe: back to normal
    False
    """
    if state.confirmed is None or verdict == state.confirmed:
        return Confirmation(confirmed=verdict)
    seen = state.seen + 1 if verdict == state.candidate else 1
    if seen >= confirm_count:
        return Confirmation(confirmed=verdict)
    return Confirmation(confirmed=state.confirmed, candidate=verdict, seen=seen)
