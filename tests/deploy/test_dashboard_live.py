"""Every dashboard query against a real Prometheus scraping a real daemon probing the lab.

One stack per module, in the background: the lab (a censored vantage with `site` TLS-reset, a
vantage cut off by a blackhole, a control vantage), `curfew run` as a subprocess, and the Debian
`prometheus` binary scraping it every second with deploy/prometheus/rules.yml loaded (group
intervals shortened to 1 s). Then each panel target, annotation and variable of
deploy/grafana/curfew-dashboard.json goes through the HTTP API and must return data.

The daemon exports the blackout metrics, and the fixture waits for the lab's block and cut-off
to be confirmed as episodes, so every panel over them must return data here. The one exception:
panels over the inferred recurring schedules (`RECURRING`) skip, naming the metric, since a
schedule needs days of history; test_dashboard_replay.py checks them on 14 simulated days.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from tests.daemon.harness import Daemon, daemon_config
from tests.deploy.prom import PROMETHEUS, VALUES, PromAPI, running_prometheus
from tests.deploy.promql import (
    BLACKOUT_METRICS,
    Query,
    annotation_queries,
    load_dashboard,
    load_rules,
    metric_names,
    panel_queries,
    resolve,
    substitute,
    variable_selectors,
)
from tests.integration.conftest import CENSORED, CONTROL_VANTAGE, scenario

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian: prometheus)")

CUT_OFF = "cutoff"
RECURRING = frozenset({"curfew_recurring_blackout_info", "curfew_recurring_vantage_shutdown_info"})
DASHBOARD = load_dashboard()
QUERIES = [*panel_queries(DASHBOARD), *annotation_queries(DASHBOARD)]

T = TypeVar("T")


class LoopThread:
    """An event loop in a thread, so the lab keeps serving while synchronous tests run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-stack", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class Stack:
    daemon: Daemon
    prom: PromAPI

    def scrape(self) -> tuple[set[str], set[str]]:
        """One scrape of the daemon: the names its samples carry, and the names it declares (# TYPE)."""
        text = httpx.get(self.daemon.metrics_url, timeout=5).text
        sampled = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
        declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        return sampled, declared

    def missing(self, query: Query) -> tuple[set[str], set[str]]:
        """The blackout metrics the query needs (through recording rules) that the daemon lacks:
        (not declared at all, declared but without a sample)."""
        needed = resolve(metric_names(query.expr)) & BLACKOUT_METRICS
        sampled, declared = self.scrape()
        return needed - declared, (needed & declared) - sampled


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("live")
    data = scenario(
        [
            {"action": "tls_reset", "vantages": [CENSORED], "targets": ["site"]},
            {"action": "blackhole", "vantages": [CUT_OFF]},
        ]
    )
    data["vantages"].insert(1, {"name": CUT_OFF, "address": "127.0.0.3"})
    loop = LoopThread()
    exits = contextlib.AsyncExitStack()
    daemon: Daemon | None = None
    try:
        lab = loop.run(exits.enter_async_context(Lab(parse_scenario(data), tmp / "lab")), 30)
        config = daemon_config(lab, tmp, f"sqlite:///{tmp / 'db' / 'curfew.db'}", interval=3)
        daemon = Daemon(tmp / "curfew.yaml", config)
        loop.run(daemon.start(), 40)

        def daemon_alive() -> None:
            assert daemon is not None and daemon.proc is not None
            assert daemon.proc.returncode is None, "daemon exited:\n" + "\n".join(daemon.lines[-30:])

        with running_prometheus(tmp, config["metrics"]["listen"], daemon_alive) as prom:
            # What the dashboard is about, scraped: a block, a cut-off vantage, reachable pairs.
            for expr in (
                f'curfew_probe_verdict{{vantage="{CENSORED}",target="site",verdict="tls_blocked"}} == 1',
                f'curfew_probe_verdict{{vantage="{CUT_OFF}",verdict="vantage_down"}} == 1',
                f'curfew_probe_success{{vantage="{CONTROL_VANTAGE}"}} == 1',
                "curfew_probe_throughput_bytes_per_second",
            ):
                prom.wait_for_data(expr, 60)
            # Both episodes confirmed: the block at the censored vantage, the cut-off vantage.
            prom.wait_for_data(f'curfew_blackout_active{{vantage="{CENSORED}",target="site"}} == 1', 60)
            prom.wait_for_data(f'curfew_vantage_shutdown_active{{vantage="{CUT_OFF}"}} == 1', 60)
            yield Stack(daemon, prom)
    finally:
        if daemon is not None:
            with contextlib.suppress(Exception):
                loop.run(daemon.stop(), 40)
            loop.run(daemon.kill(), 10)
        loop.run(exits.aclose(), 30)
        loop.close()


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_returns_data(stack: Stack, query: Query) -> None:
    absent, empty = stack.missing(query)
    assert not absent, f"{query.where} reads {', '.join(sorted(absent))}, which the daemon does not export"
    if empty and empty <= RECURRING:
        # A recurring schedule needs days of history, which a live run of seconds does not have.
        pytest.skip(
            f"{query.where} reads {', '.join(sorted(empty))}: exported, but no sample after seconds "
            "of probing (a schedule needs days; test_dashboard_replay.py checks this panel on 14 days)"
        )
    stack.prom.wait_for_data(substitute(query.expr, VALUES))


@pytest.mark.parametrize(("name", "selector", "label"), list(variable_selectors(DASHBOARD)))
def test_dashboard_variable_lists_the_lab(stack: Stack, name: str, selector: str, label: str) -> None:
    """label_values() as Grafana asks it: /api/v1/label/<label>/values?match[]=<selector>."""
    params = {"match[]": substitute(selector, VALUES)} if selector else {}
    values = set(stack.prom.api.get(f"/api/v1/label/{label}/values", params=params).json()["data"])
    expected = {"vantage": {CENSORED, CUT_OFF, CONTROL_VANTAGE}, "target": {"site", "wiki"}}[name]
    assert values == expected


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    stack.prom.wait(
        "every rule evaluated",
        lambda: all(rule["lastEvaluation"] > "2000" for rule in stack.prom.rules()),
    )
    rules = stack.prom.rules()
    assert len(rules) == sum(len(group["rules"]) for group in load_rules()["groups"])
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_recording_rules_see_the_lab(stack: Stack) -> None:
    blocked = f'curfew:blocked_pairs:count{{vantage="{CENSORED}",verdict="tls_blocked"}}'
    assert float(stack.prom.wait_for_data(blocked)[0]["value"][1]) == 1
    ratio = f'curfew:reachability:ratio_1h{{vantage="{CONTROL_VANTAGE}",target="wiki"}}'
    assert float(stack.prom.wait_for_data(ratio)[0]["value"][1]) == 1


def test_the_lab_blackout_and_shutdown_raise_alerts(stack: Stack) -> None:
    def alerts() -> set[tuple[str, str]]:
        body = stack.prom.api.get("/api/v1/alerts").json()["data"]["alerts"]
        return {
            (a["labels"]["alertname"], a["labels"].get("target", a["labels"].get("vantage", "")))
            for a in body
        }

    # Pending is enough: both rules hold for a minute before they fire.
    expected = {("BlackoutStarted", "site"), ("VantageDown", CUT_OFF)}
    stack.prom.wait("BlackoutStarted and VantageDown", lambda: expected <= alerts())
