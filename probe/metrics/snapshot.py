"""The in-memory state the collector renders: plain counts per (vantage, target), no I/O.

Each pair keeps its text exposition lines cached per family and rebuilds them only after
it changed, so a scrape of 10,000 pairs joins cached bytes instead of formatting ~1M samples.
Not thread-safe by itself: `probe.metrics.collector.Metrics` holds a lock around it.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC

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


class Histogram:
    """Counts per bucket (not cumulative), the +Inf bucket last, with sum and count."""

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
        out, total = [], 0
        for n in self.counts:
            total += n
            out.append(total)
        return out

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
    """What the metrics know about one configured (vantage, target)."""

    __slots__ = (
        "_text",
        "failures",
        "labels",
        "phases",
        "runs",
        "started",
        "target",
        "throughput",
        "vantage",
        "verdict",
    )

    def __init__(self, vantage: str, target: str) -> None:
        self.vantage = vantage
        self.target = target
        # Label names sort as failure < le < operation < phase < target < vantage < verdict; the
        # text renderer writes them in that order so its output equals prometheus_client's.
        self.labels = f'target="{escape_label_value(target)}",vantage="{escape_label_value(vantage)}"'
        self.runs: dict[Verdict, int] = dict.fromkeys(VERDICTS, 0)
        # (operation, failure label) -> count; created on first occurrence (see collector docs).
        self.failures: dict[tuple[str, str], int] = {}
        self.verdict: Verdict | None = None
        self.phases: dict[Phase, Histogram] = {p: Histogram(PHASE_BUCKETS) for p in PHASES}
        self.throughput: float | None = None  # bytes/s
        self.started: float | None = None  # unix seconds
        self._text: tuple[bytes, ...] | None = None

    def observe(self, m: Measurement, verdict: Verdict) -> None:
        self.runs[verdict] += 1
        self.verdict = verdict
        operation, failure = failing_step(m)
        if operation is not None and failure is not None:
            key = (operation, failure_label(failure))
            self.failures[key] = self.failures.get(key, 0) + 1
        for phase, seconds in phase_durations(m).items():
            self.phases[phase].observe(max(seconds, 0.0))
        if m.throughput is not None and (bps := m.throughput.bps) is not None:
            self.throughput = bps / 8
        started = m.started_at if m.started_at.tzinfo else m.started_at.replace(tzinfo=UTC)
        self.started = started.timestamp()
        self._text = None

    def text(self) -> tuple[bytes, ...]:
        """This pair's exposition lines, one bytes per family of `PER_PAIR` (cached)."""
        if self._text is None:
            self._text = tuple(s.encode() for s in self._render())
        return self._text

    def _render(self) -> tuple[str, ...]:
        lab = self.labels
        runs = "".join(f'{RUNS.sample_name}{{{lab},verdict="{v}"}} {fmt(n)}\n' for v, n in self.runs.items())
        failures = "".join(
            f'{FAILURES.sample_name}{{failure="{f}",operation="{op}",{lab}}} {fmt(n)}\n'
            for (op, f), n in self.failures.items()
        )
        success = verdicts = throughput = started = ""
        if self.verdict is not None:
            success = f"{SUCCESS.name}{{{lab}}} {fmt(int(self.verdict == 'ok'))}\n"
            verdicts = "".join(
                f'{VERDICT.name}{{{lab},verdict="{v}"}} {fmt(int(v == self.verdict))}\n' for v in VERDICTS
            )
        phases = "".join(h.lines(PHASE_DURATION.name, f',phase="{p}",{lab}') for p, h in self.phases.items())
        if self.throughput is not None:
            throughput = f"{THROUGHPUT.name}{{{lab}}} {fmt(self.throughput)}\n"
        if self.started is not None:
            started = f"{LAST_PROBE.name}{{{lab}}} {fmt(self.started)}\n"
        return (runs, failures, success, verdicts, phases, throughput, started)
