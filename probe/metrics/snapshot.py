"""The in-memory state the collector renders: plain counts per (vantage, target), no I/O.

Kept compact because there may be 10,000 pairs: one `PairState` (slots, no dict) per pair
holding its counts in `array`s, about 1 KB each, and no rendered text. The text exposition is
written on each scrape by `PairState.runs_text` and friends, from templates built once per
process (see `_Templates`), so a scrape costs CPU in proportion to the series, never memory.
Not thread-safe by itself: `probe.metrics.collector.Metrics` holds a lock around it.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from datetime import UTC
from itertools import accumulate
from typing import Final

from probe.analysis.verdict import failing_step
from probe.metrics.families import (
    FAILURES,
    LAST_PROBE,
    PHASE_BUCKETS,
    PHASE_DURATION,
    RUNS,
    SUCCESS,
    THROUGHPUT,
    VERDICT,
    escape_label_value,
    failure_label,
    fmt,
)
from probe.model import PHASES, VERDICTS, Measurement, Phase, Verdict, phase_durations

PHASE_LE: Final[tuple[str, ...]] = (*(fmt(b) for b in PHASE_BUCKETS), "+Inf")
"""The `le` label values of the phase histograms."""
N_BUCKETS: Final = len(PHASE_LE)
"""Buckets per phase histogram in `PairState.buckets`, the +Inf bucket last."""

_PHASE_INDEX: Final[dict[Phase, int]] = {p: i for i, p in enumerate(PHASES)}
_VERDICT_INDEX: Final[dict[Verdict, int]] = {v: i for i, v in enumerate(VERDICTS)}
# Up to here a count is written "%d.0"; from 1e6 on, Go (and prometheus_client) switch to 1e+06.
_FAST_COUNT_LIMIT: Final = 1_000_000


class Histogram:
    """Counts per bucket (not cumulative), the +Inf bucket last, with sum and count.

    Used once per process (scheduler lag); the per-pair phase histograms live in `PairState`.
    """

    __slots__ = ("bounds", "count", "counts", "le", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.le: tuple[str, ...] = (*(fmt(b) for b in bounds), "+Inf")
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, so a value equal to a bound counts in it (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        return list(accumulate(self.counts))

    def lines(self, name: str, labels: str) -> str:
        """Text exposition lines; `labels` are the labels sorting after `le`, comma-led, or ""."""
        rows = [
            f'{name}_bucket{{le="{le}"{labels}}} {fmt(n)}\n'
            for le, n in zip(self.le, self.cumulative(), strict=True)
        ]
        braced = "{" + labels[1:] + "}" if labels else ""
        rows.append(f"{name}_count{braced} {fmt(self.count)}\n{name}_sum{braced} {fmt(self.sum)}\n")
        return "".join(rows)


class PairState:
    """What the metrics know about one configured (vantage, target).

    `runs[i]` counts verdict `VERDICTS[i]`; `buckets[p * N_BUCKETS + b]` counts durations of
    phase `PHASES[p]` in bucket b (not cumulative, +Inf last) and `sums[p]` adds them up.
    """

    __slots__ = (
        "buckets",
        "failures",
        "labels",
        "runs",
        "started",
        "sums",
        "target",
        "throughput",
        "vantage",
        "verdict",
    )

    def __init__(self, vantage: str, target: str) -> None:
        # Interned: 10,000 pairs share 100 vantage and 100 target names.
        self.vantage = sys.intern(vantage)
        self.target = sys.intern(target)
        # Label names sort as failure < le < operation < phase < target < vantage < verdict; the
        # text renderer writes them in that order so its output equals prometheus_client's.
        self.labels = f'target="{escape_label_value(target)}",vantage="{escape_label_value(vantage)}"'
        self.runs = array("I", bytes(4 * len(VERDICTS)))
        self.buckets = array("I", bytes(4 * N_BUCKETS * len(PHASES)))
        self.sums = array("d", bytes(8 * len(PHASES)))
        # (operation, failure label) -> count; created on first occurrence (see collector docs).
        self.failures: dict[tuple[str, str], int] | None = None
        self.verdict: Verdict | None = None
        self.throughput: float | None = None  # bytes/s
        self.started: float | None = None  # unix seconds

    def observe(self, m: Measurement, verdict: Verdict) -> None:
        self.runs[_VERDICT_INDEX[verdict]] += 1
        self.verdict = verdict
        operation, failure = failing_step(m)
        if operation is not None and failure is not None:
            key = (operation, failure_label(failure))
            if self.failures is None:
                self.failures = {}
            self.failures[key] = self.failures.get(key, 0) + 1
        for phase, seconds in phase_durations(m).items():
            p = _PHASE_INDEX[phase]
            seconds = max(seconds, 0.0)
            # bisect_left: the first bound >= value, so a value equal to a bound counts in it (le).
            self.buckets[p * N_BUCKETS + bisect_left(PHASE_BUCKETS, seconds)] += 1
            self.sums[p] += seconds
        if m.throughput is not None and (bps := m.throughput.bps) is not None:
            self.throughput = bps / 8
        started = m.started_at if m.started_at.tzinfo else m.started_at.replace(tzinfo=UTC)
        self.started = started.timestamp()

    def phase_cumulative(self, p: int) -> list[int]:
        """Cumulative bucket counts of phase `PHASES[p]`, +Inf (the count) last."""
        return list(accumulate(self.buckets[p * N_BUCKETS : (p + 1) * N_BUCKETS]))

    # -- text exposition, one family at a time (the exposition groups samples by family) ---------

    def runs_text(self) -> str:
        if max(self.runs) >= _FAST_COUNT_LIMIT:
            lab = self.labels
            return "".join(
                f'{RUNS.sample_name}{{{lab},verdict="{v}"}} {fmt(n)}\n'
                for v, n in zip(VERDICTS, self.runs, strict=True)
            )
        return _percent_safe(self.labels).join(_T.runs) % tuple(self.runs)

    def failures_text(self) -> str:
        if not self.failures:
            return ""
        lab = self.labels
        return "".join(
            f'{FAILURES.sample_name}{{failure="{f}",operation="{op}",{lab}}} {fmt(n)}\n'
            for (op, f), n in self.failures.items()
        )

    def success_text(self) -> str:
        if self.verdict is None:
            return ""
        return f"{SUCCESS.name}{{{self.labels}}} {'1.0' if self.verdict == 'ok' else '0.0'}\n"

    def verdict_text(self) -> str:
        if self.verdict is None:
            return ""
        return self.labels.join(_T.verdict[self.verdict])  # no %-template: no values to fill

    def phases_text(self) -> str:
        values: list[int | str] = []
        for p in range(len(PHASES)):
            cumulative = self.phase_cumulative(p)
            if cumulative[-1] >= _FAST_COUNT_LIMIT:
                return self._phases_text_slow()
            values += cumulative
            values.append(cumulative[-1])
            values.append(_fmt_sum(self.sums[p]))
        return _percent_safe(self.labels).join(_T.phases) % tuple(values)

    def _phases_text_slow(self) -> str:
        name, lab = PHASE_DURATION.name, self.labels
        rows = []
        for p, phase in enumerate(PHASES):
            cumulative = self.phase_cumulative(p)
            rows += [
                f'{name}_bucket{{le="{le}",phase="{phase}",{lab}}} {fmt(n)}\n'
                for le, n in zip(PHASE_LE, cumulative, strict=True)
            ]
            rows.append(f'{name}_count{{phase="{phase}",{lab}}} {fmt(cumulative[-1])}\n')
            rows.append(f'{name}_sum{{phase="{phase}",{lab}}} {fmt(self.sums[p])}\n')
        return "".join(rows)

    def throughput_text(self) -> str:
        if self.throughput is None:
            return ""
        return f"{THROUGHPUT.name}{{{self.labels}}} {fmt(self.throughput)}\n"

    def started_text(self) -> str:
        if self.started is None:
            return ""
        return f"{LAST_PROBE.name}{{{self.labels}}} {fmt(self.started)}\n"


class _Templates:
    """Each family's lines for one pair with the pair's labels cut out: `labels.join(pieces)`.

    The pieces are %-format strings where they hold counts (`%d.0`) and sums (`%s`), so a
    pair's 70 phase samples are written by one `join` and one `%`, both in C.
    """

    def __init__(self) -> None:
        self.runs = _pieces(f'{RUNS.sample_name}{{\0,verdict="{v}"}} %d.0\n' for v in VERDICTS)
        self.verdict: dict[Verdict, tuple[str, ...]] = {
            last: _pieces(
                f'{VERDICT.name}{{\0,verdict="{v}"}} {"1.0" if v == last else "0.0"}\n' for v in VERDICTS
            )
            for last in VERDICTS
        }
        name = PHASE_DURATION.name
        lines = []
        for phase in PHASES:
            lines += [f'{name}_bucket{{le="{le}",phase="{phase}",\0}} %d.0\n' for le in PHASE_LE]
            lines.append(f'{name}_count{{phase="{phase}",\0}} %d.0\n')
            lines.append(f'{name}_sum{{phase="{phase}",\0}} %s\n')
        self.phases = _pieces(lines)


def _pieces(lines: Iterable[str]) -> tuple[str, ...]:
    """Split the concatenated lines at the labels' place-holder (NUL, which no name contains)."""
    return tuple("".join(lines).split("\0"))


def _percent_safe(labels: str) -> str:
    # The labels go into a %-template: a literal % in a target's name must not be read as one.
    return labels.replace("%", "%%")


def _fmt_sum(value: float) -> str:
    # floatToGoString is repr() for finite values in [0, 1e6); sums are never negative.
    return repr(value) if 0.0 <= value < 1e6 else fmt(value)


_T: Final = _Templates()
