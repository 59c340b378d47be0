"""The metric families curfew exports: names, help texts, buckets and label vocabularies.

One table so the snapshot, the collector and the fast text renderer agree on every name.
Label values come only from fixed sets (verdicts, operations, failures, phases) and from the
configured vantage and target names: never a URL or an address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, cast

from prometheus_client import utils

from probe.failures import KNOWN_FAILURES

Kind = Literal["counter", "gauge", "histogram", "info"]

_float_to_go = cast(Callable[[float], str], utils.floatToGoString)  # untyped upstream

UNKNOWN_FAILURE: Final = "unknown_failure"
FAILURE_LABELS: Final[frozenset[str]] = frozenset((*KNOWN_FAILURES, UNKNOWN_FAILURE))

PHASE_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) for phase durations, 5 ms to 10 s in 1-2.5-5 steps.

Every pair has five phase histograms, so each bucket costs 5 samples per pair (50,000 at
10,000 pairs): 11 bounds + +Inf keep a pair at 70 phase samples instead of 85. What they
resolve: a same-city RTT (5-10 ms) from a continental one (25-100 ms) from a satellite or
congested path (0.25-1 s), and throttling or tarpitting (2.5-10 s). Loopback's sub-ms
phases all land in the first bucket, and a phase slower than 10 s (the probe's deadline can
be longer) only in +Inf; the _sum still averages them exactly.
"""

LAG_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
"""Upper bounds (seconds) for how late a scheduled run started."""


def failure_label(failure: str) -> str:
    """The label value for an OONI failure string: itself if on the fixed list, else unknown_failure.

    >>> failure_label("connection_reset")
    'connection_reset'
    >>> failure_label("unknown_failure: [Errno 71] Protocol error")
    'unknown_failure'
    """
    return failure if failure in FAILURE_LABELS else UNKNOWN_FAILURE


def escape_label_value(value: str) -> str:
    """Escape a label value for the text formats (backslash, newline, double quote)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def fmt(value: float) -> str:
    """A sample value as Prometheus' Go client writes it (and as prometheus_client does)."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"  # the common case, ~10x faster than floatToGoString
    return _float_to_go(value)


@dataclass(frozen=True)
class Family:
    """One metric family. `name` is the OpenMetrics family name (no _total / _info suffix)."""

    name: str
    kind: Kind
    help: str

    @property
    def sample_name(self) -> str:
        """The name its samples carry (the histogram's samples add _bucket/_count/_sum)."""
        return self.name + {"counter": "_total", "info": "_info"}.get(self.kind, "")

    def header(self, openmetrics: bool) -> str:
        """The # HELP and # TYPE lines, byte for byte what prometheus_client writes."""
        doc = self.help.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.kind}\n"
        kind = "gauge" if self.kind == "info" else self.kind
        name = self.sample_name
        return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


BUILD_INFO: Final = Family("curfew_build", "info", "curfew's version and the Python running it (always 1).")
RUNS: Final = Family("curfew_probe_runs", "counter", "Finished probes of a (vantage, target) by verdict.")
FAILURES: Final = Family(
    "curfew_probe_failures",
    "counter",
    "Probes whose first failing step was `operation`, by OONI failure string "
    "(any unknown_failure: text counts as unknown_failure).",
)
SUCCESS: Final = Family("curfew_probe_success", "gauge", "1 if the last verdict was ok, else 0.")
VERDICT: Final = Family(
    "curfew_probe_verdict", "gauge", "1 for the last verdict of a (vantage, target), 0 for the others."
)
PHASE_DURATION: Final = Family(
    "curfew_probe_phase_duration_seconds", "histogram", "Seconds spent in each completed phase of a probe."
)
THROUGHPUT: Final = Family(
    "curfew_probe_throughput_bytes_per_second", "gauge", "Rate of the last bulk download sample, bytes/s."
)
LAST_PROBE: Final = Family(
    "curfew_last_probe_timestamp_seconds", "gauge", "Unix time at which the last finished probe started."
)
SCHEDULER_LAG: Final = Family(
    "curfew_scheduler_lag_seconds", "histogram", "Seconds by which a scheduled probe started late."
)
SPOOLED: Final = Family(
    "curfew_spooled_measurements",
    "gauge",
    "Measurements (and episode states) on disk in the journal, waiting for the database.",
)
WRITE_ERRORS: Final = Family(
    "curfew_store_write_errors", "counter", "Failed writes of measurements to the database."
)
CONTROL_FAILURES: Final = Family(
    "curfew_control_failures",
    "counter",
    "Test-helper exchanges that gave no control, by helper (its host) and reason "
    "(timeout, unreachable, http_status, too_large, bad_answer).",
)
LOCAL_FAILURES: Final = Family(
    "curfew_probe_local_failures",
    "counter",
    "Probes that failed on this machine (out of descriptors, memory, buffers or local ports), by "
    "reason; not measurements of the network, so neither judged nor stored.",
)
JOURNAL_WRITE_ERRORS: Final = Family(
    "curfew_journal_write_errors",
    "counter",
    "Failed writes of measurements to the on-disk journal (a full or failing disk); each is retried.",
)
UNJOURNALED: Final = Family(
    "curfew_unjournaled_measurements",
    "gauge",
    "Measurements held only in memory: neither the journal's disk nor the database has taken them "
    "yet; lost if the process stops now.",
)
JOURNAL_SKIPPED: Final = Family(
    "curfew_journal_skipped_lines",
    "counter",
    "Journal lines read back and not replayed (torn, damaged, or not a measurement: set aside).",
)

PER_PAIR: Final[tuple[Family, ...]] = (
    RUNS,
    FAILURES,
    SUCCESS,
    VERDICT,
    PHASE_DURATION,
    THROUGHPUT,
    LAST_PROBE,
)
"""The families with a series per (vantage, target), in exposition order."""
