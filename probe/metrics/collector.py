"""`Metrics`: curfew's Prometheus metrics, rendered from an in-memory snapshot on each scrape.

A custom collector (as prometheus/client_python recommends for exporters): `observe` updates
plain counts under a lock and `collect` builds fresh metric families from them, so a scrape
never waits on the database and the series of a pair removed from the config vanish on the
next scrape. `render_chunks` writes the same exposition as `generate_latest`, streamed pair
by pair from templates, without holding the body in memory (see docs/benchmarks.md).

Which series exist:
- for every configured pair from start-up: runs_total for each verdict and the phase
  histograms, at 0;
- after a pair's first result: success, verdict (1 for the last verdict, 0 for the others),
  last_probe_timestamp_seconds; after its first bulk sample: throughput;
- failures_total{operation,failure} from the first time that failure happens at that step.
  Exporting all 5 operations x 17 failures at 0 would add 85 series per pair for
  combinations that mostly never occur; alert on runs_total{verdict!="ok"}, which exists
  from start-up, and use failures_total to tell how.
"""

from __future__ import annotations

import logging
import platform
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Final, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.registry import Collector

import probe
from probe.failures import LOCAL_REASONS
from probe.metrics.families import (
    BUILD_INFO,
    FAILURES,
    LAG_BUCKETS,
    LAST_PROBE,
    LOCAL_FAILURES,
    PER_PAIR,
    PHASE_DURATION,
    RUNS,
    SCHEDULER_LAG,
    SPOOLED,
    SUCCESS,
    THROUGHPUT,
    VERDICT,
    WRITE_ERRORS,
    escape_label_value,
    fmt,
)
from probe.metrics.snapshot import PHASE_LE, Histogram, PairState
from probe.model import PHASES, VERDICTS

if TYPE_CHECKING:
    from probe.model import Result

log = logging.getLogger(__name__)

_openmetrics_latest = cast(Callable[[Collector], bytes], om_exposition.generate_latest)  # untyped upstream

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Pair = tuple[str, str]


class Metrics:
    """curfew's metrics on an explicit registry (a new one unless given; never the global one).

    >>> m = Metrics()
    >>> m.set_pairs([("kz-kazakhtelecom", "facebook")])
    >>> m.registry.get_sample_value(
    ...     "curfew_probe_runs_total", {"vantage": "kz-kazakhtelecom", "target": "facebook", "verdict": "ok"}
    ... )
    0
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, build_version: str = probe.__version__
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._build = {"version": build_version, "python": platform.python_version()}
        self._lock = threading.Lock()
        self._pairs: dict[Pair, PairState] = {}
        self._lag = Histogram(LAG_BUCKETS)
        self._local_failures = dict.fromkeys(LOCAL_REASONS, 0)
        self._spool: Callable[[], int] | None = None
        self._write_errors: Callable[[], int] | None = None
        # Set while `render` asks the registry for everyone else's families: ours come from cache.
        self._rendering = threading.local()
        self.registry.register(self)

    # -- updates --------------------------------------------------------------------------------

    def set_pairs(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Declare the configured (vantage, target) pairs, e.g. on start-up and on each reload.

        New pairs get their zero series; pairs kept keep their counts; pairs not listed lose all
        their series from the next scrape. Results for pairs not listed are ignored.
        """
        wanted = dict.fromkeys(pairs)
        with self._lock:
            old = self._pairs
            self._pairs = {pair: old.get(pair) or PairState(*pair) for pair in wanted}

    def observe(self, result: Result) -> None:
        """Count one finished probe: its verdict, its failure, its phase durations, its rate."""
        m = result.measurement
        with self._lock:
            state = self._pairs.get((m.vantage, m.target))
            if state is None:
                log.debug("metrics: ignoring a result for unconfigured pair %s/%s", m.vantage, m.target)
                return
            state.observe(m, result.analysis.verdict)

    def observe_scheduler_lag(self, seconds: float) -> None:
        """Record how many seconds late a scheduled probe started (negative counts as 0)."""
        with self._lock:
            self._lag.observe(max(seconds, 0.0))

    def observe_local_failure(self, reason: str) -> None:
        """Count a probe that failed on this machine (`probe.failures.LOCAL_REASONS`)."""
        with self._lock:
            if reason in self._local_failures:
                self._local_failures[reason] += 1

    def set_spool_source(self, fn: Callable[[], int]) -> None:
        """`fn()` returns the number of spooled measurements; called at scrape time, so keep it cheap."""
        self._spool = fn

    def set_write_errors_source(self, fn: Callable[[], int]) -> None:
        """`fn()` returns the store's cumulative count of failed writes (exported as a counter)."""
        self._write_errors = fn

    # -- the collector protocol (prometheus_client) ----------------------------------------------

    def describe(self) -> list[Metric]:
        """Our family names, so the registry refuses a second collector using one of them."""
        fams: list[Metric] = [
            InfoMetricFamily(BUILD_INFO.name, BUILD_INFO.help),
            CounterMetricFamily(RUNS.name, RUNS.help),
            CounterMetricFamily(FAILURES.name, FAILURES.help),
            GaugeMetricFamily(SUCCESS.name, SUCCESS.help),
            GaugeMetricFamily(VERDICT.name, VERDICT.help),
            HistogramMetricFamily(PHASE_DURATION.name, PHASE_DURATION.help),
            GaugeMetricFamily(THROUGHPUT.name, THROUGHPUT.help),
            GaugeMetricFamily(LAST_PROBE.name, LAST_PROBE.help),
            HistogramMetricFamily(SCHEDULER_LAG.name, SCHEDULER_LAG.help),
            CounterMetricFamily(LOCAL_FAILURES.name, LOCAL_FAILURES.help),
            GaugeMetricFamily(SPOOLED.name, SPOOLED.help),
            CounterMetricFamily(WRITE_ERRORS.name, WRITE_ERRORS.help),
        ]
        return fams

    def collect(self) -> Iterator[Metric]:
        """Fresh metric families from the snapshot (the general path; `render` is the fast one)."""
        if getattr(self._rendering, "active", False):
            return iter(())
        spooled, write_errors = self._read_sources()
        with self._lock:
            fams = self._families(spooled, write_errors)
        return iter(fams)

    def _families(self, spooled: int | None, write_errors: int | None) -> list[Metric]:
        pair_labels = ["vantage", "target"]
        info = InfoMetricFamily(BUILD_INFO.name, BUILD_INFO.help, value=self._build)
        runs = CounterMetricFamily(RUNS.name, RUNS.help, labels=[*pair_labels, "verdict"])
        failures = CounterMetricFamily(
            FAILURES.name, FAILURES.help, labels=[*pair_labels, "operation", "failure"]
        )
        success = GaugeMetricFamily(SUCCESS.name, SUCCESS.help, labels=pair_labels)
        verdict = GaugeMetricFamily(VERDICT.name, VERDICT.help, labels=[*pair_labels, "verdict"])
        phases = HistogramMetricFamily(
            PHASE_DURATION.name, PHASE_DURATION.help, labels=[*pair_labels, "phase"]
        )
        throughput = GaugeMetricFamily(THROUGHPUT.name, THROUGHPUT.help, labels=pair_labels)
        last = GaugeMetricFamily(LAST_PROBE.name, LAST_PROBE.help, labels=pair_labels)
        for (v, t), s in self._pairs.items():
            for name, n in zip(VERDICTS, s.runs, strict=True):
                runs.add_metric([v, t, name], n)
            for (op, f), n in (s.failures or {}).items():
                failures.add_metric([v, t, op, f], n)
            if s.verdict is not None:
                success.add_metric([v, t], int(s.verdict == "ok"))
                for name in VERDICTS:
                    verdict.add_metric([v, t, name], int(name == s.verdict))
            for p, phase in enumerate(PHASES):
                phases.add_metric([v, t, phase], _buckets(PHASE_LE, s.phase_cumulative(p)), s.sums[p])
            if s.throughput is not None:
                throughput.add_metric([v, t], s.throughput)
            if s.started is not None:
                last.add_metric([v, t], s.started)
        lag = HistogramMetricFamily(
            SCHEDULER_LAG.name,
            SCHEDULER_LAG.help,
            buckets=_buckets(self._lag.le, self._lag.cumulative()),
            sum_value=self._lag.sum,
        )
        local = CounterMetricFamily(LOCAL_FAILURES.name, LOCAL_FAILURES.help, labels=["reason"])
        for reason, n in self._local_failures.items():
            local.add_metric([reason], n)
        fams: list[Metric] = [info, runs, failures, success, verdict, phases, throughput, last, lag, local]
        if spooled is not None:
            fams.append(GaugeMetricFamily(SPOOLED.name, SPOOLED.help, value=spooled))
        if write_errors is not None:
            fams.append(CounterMetricFamily(WRITE_ERRORS.name, WRITE_ERRORS.help, value=write_errors))
        return fams

    def _read_sources(self) -> tuple[int | None, int | None]:
        # Outside the lock: the sources belong to the store and may take their own locks.
        return _read(self._spool, "spool"), _read(self._write_errors, "write errors")

    # -- fast exposition --------------------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The /metrics body and its Content-Type for an HTTP Accept header, as one bytes.

        Text format 0.0.4 unless `accept` asks for application/openmetrics-text. Byte for byte
        what prometheus_client's encoders write for this registry. For tests and small
        registries: the server streams `render_chunks` instead.
        """
        chunks, content_type = self.render_chunks(accept)
        return b"".join(chunks), content_type

    def render_chunks(self, accept: str = "") -> tuple[Generator[bytes, None, None], str]:
        """Like `render`, as a generator of byte strings of about `CHUNK` bytes, written lazily.

        Nothing is rendered until the first chunk is asked for, and at most one chunk is held:
        the body of 10,000 pairs (~90 MB of text) never exists in memory as a whole. The lock
        is taken per batch of pairs, so `observe` on the event loop waits for one batch at most.
        A scrape is not an atomic snapshot across families (neither is prometheus_client's).
        """
        openmetrics = "application/openmetrics-text" in accept
        content_type = CONTENT_TYPE_OPENMETRICS if openmetrics else CONTENT_TYPE_TEXT
        return self._exposition(openmetrics), content_type

    def _exposition(self, openmetrics: bool) -> Generator[bytes, None, None]:
        spooled, write_errors = self._read_sources()
        with self._lock:
            states = list(self._pairs.values())  # pairs removed meanwhile still render this once
        build = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(self._build.items()))
        parts = [f"{BUILD_INFO.header(openmetrics)}{BUILD_INFO.sample_name}{{{build}}} 1.0\n"]
        size = 0
        for family, text in zip(PER_PAIR, _PAIR_TEXT, strict=True):
            parts.append(family.header(openmetrics))
            for i in range(0, len(states), _PAIRS_PER_BATCH):
                with self._lock:
                    batch = [text(s) for s in states[i : i + _PAIRS_PER_BATCH]]
                parts += batch
                size += sum(map(len, batch))
                if size >= CHUNK:
                    yield "".join(parts).encode()
                    parts, size = [], 0
        with self._lock:
            parts.append(SCHEDULER_LAG.header(openmetrics) + self._lag.lines(SCHEDULER_LAG.name, ""))
            parts.append(LOCAL_FAILURES.header(openmetrics))
            name = LOCAL_FAILURES.sample_name
            parts += [f'{name}{{reason="{r}"}} {fmt(n)}\n' for r, n in self._local_failures.items()]
        if spooled is not None:
            parts.append(f"{SPOOLED.header(openmetrics)}{SPOOLED.name} {fmt(spooled)}\n")
        if write_errors is not None:
            parts.append(
                f"{WRITE_ERRORS.header(openmetrics)}{WRITE_ERRORS.sample_name} {fmt(write_errors)}\n"
            )
        yield "".join(parts).encode()
        # Everyone else's families on the registry; ours are skipped while the flag is set.
        # Reset before yielding: the flag is per thread and the thread pool runs other work.
        self._rendering.active = True
        try:
            rest = _openmetrics_latest(self.registry) if openmetrics else generate_latest(self.registry)
        finally:
            self._rendering.active = False
        yield rest  # the OpenMetrics text ends with "# EOF"


CHUNK: Final = 256 * 1024
"""About how many bytes of text `render_chunks` gathers before it yields them."""

_PAIRS_PER_BATCH: Final = 16  # ~0.2 ms of rendering under the lock, ~110 KB of phase samples

# How each family of PER_PAIR (same order) writes one pair's samples.
_PAIR_TEXT: Final[tuple[Callable[[PairState], str], ...]] = (
    PairState.runs_text,
    PairState.failures_text,
    PairState.success_text,
    PairState.verdict_text,
    PairState.phases_text,
    PairState.throughput_text,
    PairState.started_text,
)


def _buckets(le: tuple[str, ...], cumulative: list[int]) -> list[tuple[str, float]]:
    return [(b, float(n)) for b, n in zip(le, cumulative, strict=True)]


def _read(fn: Callable[[], int] | None, what: str) -> int | None:
    if fn is None:
        return None
    try:
        return int(fn())
    except Exception:
        log.exception("metrics: reading the %s source failed; the sample is left out", what)
        return None


__all__ = ["CONTENT_TYPE_OPENMETRICS", "CONTENT_TYPE_TEXT", "Metrics"]
