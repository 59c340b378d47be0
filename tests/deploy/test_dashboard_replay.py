"""Every dashboard query, strict, against 14 replayed days of an evening block.

The live test can only show what a daemon sees in seconds; a schedule needs days. Here the
daemon's own metric code renders the scrape: `Metrics` (fed hand-made results) and the
`BlackoutCollector` over a `Monitor` fed 14 days of Kazakhstan-style evenings up to now
(youtube TLS-blocked 20:00-22:00 Asia/Almaty and again for the last half hour; a second
vantage cut off nightly 01:00-05:00 and for the last half hour). A real Prometheus scrapes it;
every panel, the heatmap's evening stripe and the schedules table are checked through its API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from probe.episodes import Observation
from probe.episodes.monitor import Monitor
from probe.metrics.blackouts import BlackoutCollector
from probe.metrics.collector import Metrics
from tests.daemon.harness import free_port
from tests.deploy.prom import PROMETHEUS, VALUES, PromAPI, running_prometheus
from tests.deploy.promql import Query, annotation_queries, load_dashboard, panel_queries, substitute
from tests.metrics.builders import result, throughput

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian: prometheus)")

ALMATY = "Asia/Almaty"
CENSORED, CUT_OFF = "kz-almaty", "kz-beeline"
TARGETS = ("youtube", "wiki")
PAIRS = [(v, t) for v in (CENSORED, CUT_OFF) for t in TARGETS]
ZONES = {CENSORED: ALMATY, CUT_OFF: ALMATY}
DASHBOARD = load_dashboard()
QUERIES = [*panel_queries(DASHBOARD), *annotation_queries(DASHBOARD)]


def verdict(vantage: str, target: str, t: datetime, now: datetime) -> str:
    recent = now - t < timedelta(minutes=30)
    hour = t.astimezone(ZoneInfo(ALMATY)).hour
    if vantage == CUT_OFF:
        return "vantage_down" if recent or 1 <= hour < 5 else "ok"
    if target == "youtube" and (recent or 20 <= hour < 22):
        return "tls_blocked"
    return "ok"


def replayed_monitor(now: datetime) -> Monitor:
    """14 days of probes every 10 minutes up to `now`."""
    monitor = Monitor(ZONES)
    monitor.set_config(ZONES, PAIRS)
    # On a 10-minute grid, so the evening's first blocked probe is at 20:00 sharp.
    t = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0) - timedelta(days=14)
    while t <= now:
        for i, (vantage, target) in enumerate(PAIRS):
            at = t + timedelta(seconds=10 * i)
            v = verdict(vantage, target, at, now)
            monitor.observe(Observation(vantage, target, at, v, None if v == "ok" else "connection_reset"))
        t += timedelta(minutes=10)
    return monitor


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromAPI]:
    now = datetime.now(UTC)
    monitor = replayed_monitor(now)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.set_pairs(PAIRS)
    metrics.set_spool_source(lambda: 0)
    metrics.set_write_errors_source(lambda: 0)
    registry.register(BlackoutCollector(lambda: monitor.snapshot(datetime.now(UTC))))

    stop = threading.Event()

    def probe_forever() -> None:
        # Counters must move for rate() and increase() panels; one round every half second.
        while not stop.is_set():
            for vantage, target in PAIRS:
                v = verdict(vantage, target, now, now)
                steps: dict[str, Any] = {"throughput_obs": throughput(8e6)}
                if v == "tls_blocked":
                    steps = {"tls_failure": "connection_reset"}
                metrics.observe(result(target, v, vantage=vantage, **steps))
            metrics.observe_scheduler_lag(0.01)
            stop.wait(0.5)

    prober = threading.Thread(target=probe_forever, name="replay-prober", daemon=True)
    prober.start()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        with running_prometheus(tmp_path_factory.mktemp("replay"), f"127.0.0.1:{port}") as api:
            api.wait_for_data("curfew_blackout_active == 1")
            yield api
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
        prober.join(10)


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_returns_data(prom: PromAPI, query: Query) -> None:
    prom.wait_for_data(substitute(query.expr, VALUES))


def heatmap_query() -> str:
    (target,) = next(p for p in DASHBOARD["panels"] if p["type"] == "heatmap")["targets"]
    values = {**VALUES, "vantage": CENSORED, "target": "youtube"}  # a repeated panel's own values
    return substitute(target["expr"], values)


def test_the_heatmap_shows_the_evening_stripe(prom: PromAPI) -> None:
    rows = {r["metric"]["hour"]: float(r["value"][1]) for r in prom.wait_for_data(heatmap_query())}
    assert sorted(rows) == [f"{h:02d}" for h in range(24)]  # 24 rows, padded so they sort
    assert rows["20"] == rows["21"] == 0.0
    assert median(v for h, v in rows.items() if h not in ("20", "21")) == 1.0


def test_the_schedules_table_names_the_window(prom: PromAPI) -> None:
    (panel,) = [p for p in DASHBOARD["panels"] if p["title"] == "Recurring schedules"]
    rows = prom.wait_for_data(substitute(panel["targets"][0]["expr"], VALUES))
    (row,) = [r["metric"] for r in rows]
    assert (row["vantage"], row["target"], row["verdict"]) == (CENSORED, "youtube", "tls_blocked")
    # Onset between the last good probe (19:50) and the first bad one (20:00), local time.
    assert "19:50" <= row["window"][:5] <= "20:00" and row["days"].endswith("/14")
    (panel,) = [p for p in DASHBOARD["panels"] if p["title"] == "Recurring vantage shutdowns"]
    (row,) = [r["metric"] for r in prom.wait_for_data(substitute(panel["targets"][0]["expr"], VALUES))]
    assert row["vantage"] == CUT_OFF and "00:50" <= row["window"][:5] <= "01:00"


def test_the_active_blackouts_table_has_technique_and_onset(prom: PromAPI) -> None:
    (panel,) = [p for p in DASHBOARD["panels"] if p["type"] == "table" and p["title"] == "Active blackouts"]
    (started,) = prom.wait_for_data(substitute(panel["targets"][0]["expr"], VALUES))
    assert started["metric"] == {"vantage": CENSORED, "target": "youtube", "verdict": "tls_blocked"}
    onset_ms = float(started["value"][1])
    assert 0 < datetime.now(UTC).timestamp() * 1000 - onset_ms < 45 * 60 * 1000


def test_the_alerts_fire(prom: PromAPI) -> None:
    def firing() -> set[str]:
        alerts = prom.api.get("/api/v1/alerts").json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    # Rules with `for: 1m` would need a minute of scrapes; the schedule alerts have none.
    prom.wait(
        "the schedule alerts firing",
        lambda: {"RecurringScheduleDetected", "RecurringShutdownDetected"} <= firing(),
    )
    pending = {a["labels"]["alertname"] for a in prom.api.get("/api/v1/alerts").json()["data"]["alerts"]}
    assert {"BlackoutStarted", "VantageDown"} <= pending
