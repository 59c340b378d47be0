"""The metrics a finished probe leaves behind, read back with registry.get_sample_value()."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from probe.failures import LOCAL_REASONS
from probe.metrics import Metrics, collector, failure_label
from probe.metrics.families import PHASE_BUCKETS
from probe.model import OPERATIONS, PHASES, VERDICTS
from tests.metrics.builders import STARTED, VANTAGE, labels, result, throughput

PAIRS = [(VANTAGE, "facebook"), (VANTAGE, "wikipedia")]


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(CollectorRegistry(), build_version="9.9.9")
    m.set_pairs(PAIRS)
    return m


def value(metrics: Metrics, name: str, **lab: str) -> float | None:
    return metrics.registry.get_sample_value(name, lab)


def series(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in metrics.registry.collect() for s in fam.samples]


def test_known_pairs_have_zero_counters_and_histograms_from_startup(metrics: Metrics) -> None:
    for _, target in PAIRS:
        for verdict in VERDICTS:
            assert value(metrics, "curfew_probe_runs_total", **labels(target, verdict=verdict)) == 0
        for phase in PHASES:
            lab = labels(target, phase=phase)
            assert value(metrics, "curfew_probe_phase_duration_seconds_count", **lab) == 0
            assert value(metrics, "curfew_probe_phase_duration_seconds_sum", **lab) == 0
            assert value(metrics, "curfew_probe_phase_duration_seconds_bucket", **lab, le="+Inf") == 0
        # Last-value gauges say nothing until there is a last value: success 0 would read "blocked".
        assert value(metrics, "curfew_probe_success", **labels(target)) is None
        assert value(metrics, "curfew_last_probe_timestamp_seconds", **labels(target)) is None
    assert value(metrics, "curfew_scheduler_lag_seconds_count") == 0


def test_an_ok_probe(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "ok"))

    assert value(metrics, "curfew_probe_runs_total", **labels(verdict="ok")) == 1
    assert value(metrics, "curfew_probe_runs_total", **labels(verdict="tls_blocked")) == 0
    assert value(metrics, "curfew_probe_success", **labels()) == 1
    assert value(metrics, "curfew_probe_verdict", **labels(verdict="ok")) == 1
    for other in VERDICTS[1:]:
        assert value(metrics, "curfew_probe_verdict", **labels(verdict=other)) == 0
    assert value(metrics, "curfew_last_probe_timestamp_seconds", **labels()) == STARTED.timestamp()
    assert not [s for s in series(metrics) if s[0] == "curfew_probe_failures_total"]
    # The other pair is untouched.
    assert value(metrics, "curfew_probe_runs_total", **labels("wikipedia", verdict="ok")) == 0
    assert value(metrics, "curfew_probe_success", **labels("wikipedia")) is None


def test_phase_durations_land_in_their_buckets(metrics: Metrics) -> None:
    # The builder's steps: dns 0.05 s, tcp 0.05 s, tls 0.1 s, http ttfb 0.1 s and total 0.2 s.
    metrics.observe(result("facebook", "ok"))
    metrics.observe(result("facebook", "ok"))

    expected = {
        "dns": 0.05,
        "tcp_connect": 0.05,
        "tls_handshake": 0.1,
        "http_first_byte": 0.1,
        "http_total": 0.2,
    }
    for phase, seconds in expected.items():
        lab = labels(phase=phase)
        assert value(metrics, "curfew_probe_phase_duration_seconds_count", **lab) == 2
        assert value(metrics, "curfew_probe_phase_duration_seconds_sum", **lab) == pytest.approx(2 * seconds)
        for bound in PHASE_BUCKETS:
            le = str(bound)
            bucket = value(metrics, "curfew_probe_phase_duration_seconds_bucket", **lab, le=le)
            # A duration equal to a bound counts in that bucket (le = less than or equal).
            assert bucket == (2 if seconds <= bound + 1e-12 else 0), (phase, le)
        assert value(metrics, "curfew_probe_phase_duration_seconds_bucket", **lab, le="+Inf") == 2


def test_a_tls_reset_counts_the_failure_at_its_step(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "tls_blocked", tls_failure="connection_reset"))

    lab = labels(operation="tls_handshake", failure="connection_reset")
    assert value(metrics, "curfew_probe_failures_total", **lab) == 1
    assert value(metrics, "curfew_probe_runs_total", **labels(verdict="tls_blocked")) == 1
    assert value(metrics, "curfew_probe_success", **labels()) == 0
    assert value(metrics, "curfew_probe_verdict", **labels(verdict="tls_blocked")) == 1
    assert value(metrics, "curfew_probe_verdict", **labels(verdict="ok")) == 0
    # Only the phases that completed were timed.
    assert value(metrics, "curfew_probe_phase_duration_seconds_count", **labels(phase="tcp_connect")) == 1
    assert value(metrics, "curfew_probe_phase_duration_seconds_count", **labels(phase="tls_handshake")) == 0


def test_an_interception_counts_as_a_tls_handshake_failure(metrics: Metrics) -> None:
    metrics.observe(
        result("facebook", "tls_mitm", tls_valid=False, validation_failure="ssl_unknown_authority")
    )

    lab = labels(operation="tls_handshake", failure="ssl_unknown_authority")
    assert value(metrics, "curfew_probe_failures_total", **lab) == 1


def test_any_unknown_failure_text_is_one_label_value(metrics: Metrics) -> None:
    metrics.observe(
        result("facebook", "inconclusive", dns_failure="unknown_failure: [Errno 71] Protocol error")
    )
    metrics.observe(result("facebook", "inconclusive", dns_failure="unknown_failure: dns BadLabel"))

    failures = [(s[1]["operation"], s[1]["failure"], s[2]) for s in series(metrics) if "failure" in s[1]]
    assert failures == [("dns", "unknown_failure", 2)]


@pytest.mark.parametrize(
    ("failure", "label"),
    [
        ("dns_nxdomain_error", "dns_nxdomain_error"),
        ("generic_timeout_error", "generic_timeout_error"),
        ("ssl_invalid_hostname", "ssl_invalid_hostname"),
        ("unknown_failure: connection closed by https://example.org/", "unknown_failure"),
        ("unknown_failure", "unknown_failure"),
        ("not_an_ooni_failure", "unknown_failure"),
    ],
)
def test_failure_label(failure: str, label: str) -> None:
    assert failure_label(failure) == label


def test_throughput_is_exported_in_bytes_per_second_and_kept_until_the_next_sample(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "ok", throughput_obs=throughput(8_000_000)))
    assert value(metrics, "curfew_probe_throughput_bytes_per_second", **labels()) == pytest.approx(1_000_000)

    metrics.observe(result("facebook", "ok"))  # no bulk download this time
    assert value(metrics, "curfew_probe_throughput_bytes_per_second", **labels()) == pytest.approx(1_000_000)

    metrics.observe(result("facebook", "throttled", throughput_obs=throughput(140_000)))
    assert value(metrics, "curfew_probe_throughput_bytes_per_second", **labels()) == pytest.approx(17_500)


def test_a_pair_removed_from_the_config_loses_every_series(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "tls_blocked", tls_failure="connection_reset"))
    metrics.observe(result("wikipedia", "ok", throughput_obs=throughput(8_000_000)))

    metrics.set_pairs([(VANTAGE, "facebook")])

    assert not [s for s in series(metrics) if s[1].get("target") == "wikipedia"]
    assert value(metrics, "curfew_probe_runs_total", **labels(verdict="tls_blocked")) == 1
    # Nor does the text say anything about it.
    assert b"wikipedia" not in metrics.render()[0]
    assert b"wikipedia" not in generate_latest(metrics.registry)


def test_a_pair_kept_across_a_reload_keeps_its_counts_and_a_new_one_starts_at_zero(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "ok"))

    metrics.set_pairs([(VANTAGE, "facebook"), ("kz-beeline", "facebook")])

    assert value(metrics, "curfew_probe_runs_total", **labels(verdict="ok")) == 1
    assert value(metrics, "curfew_probe_runs_total", **labels(vantage="kz-beeline", verdict="ok")) == 0


def test_a_result_for_an_unconfigured_pair_is_ignored(metrics: Metrics) -> None:
    # e.g. a probe that finished after a reload removed its pair: it must not bring the series back.
    metrics.observe(result("telegram", "dns_blocked", dns_failure="dns_nxdomain_error"))

    assert not [s for s in series(metrics) if s[1].get("target") == "telegram"]


def test_scheduler_lag(metrics: Metrics) -> None:
    metrics.observe_scheduler_lag(0.3)
    metrics.observe_scheduler_lag(12.0)
    metrics.observe_scheduler_lag(-0.1)  # early by clock jitter: on time

    assert value(metrics, "curfew_scheduler_lag_seconds_count") == 3
    assert value(metrics, "curfew_scheduler_lag_seconds_sum") == pytest.approx(12.3)
    assert value(metrics, "curfew_scheduler_lag_seconds_bucket", le="0.005") == 1
    assert value(metrics, "curfew_scheduler_lag_seconds_bucket", le="0.5") == 2
    assert value(metrics, "curfew_scheduler_lag_seconds_bucket", le="10.0") == 2
    assert value(metrics, "curfew_scheduler_lag_seconds_bucket", le="30.0") == 3


def test_spool_and_write_errors_are_read_at_scrape_time(metrics: Metrics) -> None:
    assert value(metrics, "curfew_spooled_measurements") is None
    spooled, errors = [4], [0]
    metrics.set_spool_source(lambda: spooled[0])
    metrics.set_write_errors_source(lambda: errors[0])
    assert value(metrics, "curfew_spooled_measurements") == 4
    assert value(metrics, "curfew_store_write_errors_total") == 0

    spooled[0], errors[0] = 0, 2

    assert value(metrics, "curfew_spooled_measurements") == 0
    assert value(metrics, "curfew_store_write_errors_total") == 2


def test_a_failing_source_leaves_its_sample_out_and_the_scrape_works(metrics: Metrics) -> None:
    def broken() -> int:
        raise RuntimeError("store closed")

    metrics.set_spool_source(broken)

    assert value(metrics, "curfew_spooled_measurements") is None
    assert value(metrics, "curfew_probe_runs_total", **labels(verdict="ok")) == 0
    text, _ = metrics.render()
    assert b"curfew_spooled_measurements" not in text
    assert text == generate_latest(metrics.registry)


def test_build_info(metrics: Metrics) -> None:
    samples = [s for s in series(metrics) if s[0] == "curfew_build_info"]
    assert len(samples) == 1
    _, lab, one = samples[0]
    assert lab["version"] == "9.9.9" and lab["python"].count(".") == 2 and one == 1


def test_label_values_come_only_from_fixed_sets_and_configured_names(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "tls_blocked", tls_failure="connection_reset"))
    metrics.observe(result("wikipedia", "dns_blocked", dns_failure="unknown_failure: 10.10.34.36 said no"))
    metrics.observe(result("wikipedia", "ok", throughput_obs=throughput(1e6)))
    allowed = {
        "vantage": {VANTAGE},
        "target": {"facebook", "wikipedia"},
        "verdict": set(VERDICTS),
        "operation": set(OPERATIONS),
        "phase": set(PHASES),
        "reason": set(LOCAL_REASONS),
        "le": {str(b) for b in PHASE_BUCKETS} | {"+Inf"} | {str(b) for b in (0.005, 60.0, 300.0)},
    }
    for name, lab, _ in series(metrics):
        for key, val in lab.items():
            if key == "failure":
                assert failure_label(val) == val, (name, lab)
            elif key in allowed and key != "le":
                assert val in allowed[key], (name, lab)
            else:
                assert key in ("le", "version", "python"), (name, lab)


def test_the_fast_text_is_what_prometheus_client_writes(metrics: Metrics) -> None:
    metrics.set_spool_source(lambda: 7)
    metrics.set_write_errors_source(lambda: 1)
    metrics.observe(result("facebook", "tls_blocked", tls_failure="connection_reset"))
    text, content_type = metrics.render()
    assert text == generate_latest(metrics.registry)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"

    # A pair that changed is rendered again, not served from its cache.
    metrics.observe(result("wikipedia", "ok", throughput_obs=throughput(1e6)))
    metrics.observe_scheduler_lag(2.0)
    text, _ = metrics.render()
    assert text == generate_latest(metrics.registry)

    text, content_type = metrics.render("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert text == generate_openmetrics(metrics.registry)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith(b"# EOF\n")


def test_other_collectors_on_the_registry_are_rendered_too() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.set_pairs(PAIRS)
    Counter("curfew_reloads", "Config reloads.", registry=registry).inc()

    text, _ = metrics.render()
    assert text == generate_latest(registry)
    assert b"curfew_reloads_total 1.0" in text
    om_text, _ = metrics.render("application/openmetrics-text")
    assert om_text == generate_openmetrics(registry) and om_text.count(b"# EOF") == 1


def test_a_name_clash_on_the_registry_is_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("curfew_probe_runs", "again", registry=metrics.registry)


def test_the_global_registry_is_left_alone(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "ok"))
    assert REGISTRY.get_sample_value("curfew_probe_runs_total", labels(verdict="ok")) is None


def test_the_text_is_streamed_in_chunks_of_bounded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, "CHUNK", 4096)
    metrics = Metrics(CollectorRegistry())
    metrics.set_pairs((VANTAGE, f"target-{i}") for i in range(200))
    for i in range(0, 200, 3):
        metrics.observe(result(f"target-{i}", "tls_blocked", tls_failure="connection_reset"))

    chunks = list(metrics.render_chunks()[0])

    assert len(chunks) > 10
    # At most one batch of pairs' text past CHUNK, never the body.
    assert max(map(len, chunks)) < sum(map(len, chunks)) / 4
    assert b"".join(chunks) == generate_latest(metrics.registry)


def test_counts_from_a_million_on_are_written_as_prometheus_client_writes_them(metrics: Metrics) -> None:
    metrics.observe(result("facebook", "ok"))
    # A million probes take ~2 years at one a minute: set the counts rather than observe them.
    state = metrics._pairs[(VANTAGE, "facebook")]
    state.runs[0] = 1_234_567
    state.buckets[3] = 2_000_000

    text, _ = metrics.render()

    assert text == generate_latest(metrics.registry)
    assert b'verdict="ok"} 1.234567e+06\n' in text


def test_local_failures_are_counted_by_reason_from_zero(metrics: Metrics) -> None:
    name = "curfew_probe_local_failures_total"
    assert {r: value(metrics, name, reason=r) for r in LOCAL_REASONS} == dict.fromkeys(LOCAL_REASONS, 0)
    metrics.observe_local_failure("emfile")
    metrics.observe_local_failure("emfile")
    metrics.observe_local_failure("enobufs")
    metrics.observe_local_failure("no such reason")  # never a label value outside the fixed set
    assert value(metrics, name, reason="emfile") == 2
    assert value(metrics, name, reason="enobufs") == 1
    assert value(metrics, name, reason="no such reason") is None
    text = metrics.render()[0].decode()
    assert f'{name}{{reason="emfile"}} 2.0' in text
    assert generate_latest(metrics.registry) == metrics.render()[0]
