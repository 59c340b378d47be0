"""Every dashboard query against a real Prometheus scraping a real daemon probing the lab.

One stack per module, in the background: the lab (a censored vantage with `site` TLS-reset, a
vantage cut off by a blackhole, a control vantage), `curfew run` as a subprocess, and the Debian
`prometheus` binary scraping it every second with deploy/prometheus/rules.yml loaded (group
intervals shortened to 1 s). Then each panel target, annotation and variable of
deploy/grafana/curfew-dashboard.json goes through the HTTP API and must return data.

Panels over the blackout metrics (issue 4) skip, naming the metric, while the daemon's scrape
has no sample of it; they turn strict by themselves once the blackout collector is wired.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from tests.daemon.harness import Daemon, daemon_config, free_port
from tests.deploy.promql import (
    BLACKOUT_METRICS,
    RULES,
    Query,
    annotation_queries,
    load_dashboard,
    metric_names,
    panel_queries,
    resolve,
    substitute,
    variable_selectors,
)
from tests.integration.conftest import CENSORED, CONTROL_VANTAGE, scenario

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (Debian: prometheus)")

CUT_OFF = "cutoff"
# Grafana's variables as the test fills them in: every vantage and target, short windows.
VALUES = {
    "vantage": ".*",
    "target": ".*",
    "__rate_interval": "15s",
    "__interval": "15s",
    "__range": "5m",
}
QUERY_TIMEOUT = 30.0  # seconds for one query to return data once the stack is up
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
    api: httpx.Client  # Prometheus' HTTP API

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = self.api.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body.get('error', response.text)}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.daemon.proc is None or self.daemon.proc.returncode is None, (
                "daemon exited:\n" + "\n".join(self.daemon.lines[-30:])
            )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.5)

    def scrape(self) -> tuple[set[str], set[str]]:
        """One scrape of the daemon: the names its samples carry, and the names it declares (# TYPE)."""
        text = httpx.get(self.daemon.metrics_url, timeout=5).text
        sampled = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
        declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        return sampled, declared

    def missing(self, query: Query) -> tuple[set[str], set[str]]:
        """The blackout metrics the query needs (through recording rules) that the daemon lacks:
        (not declared at all, declared but without a sample after QUERY_TIMEOUT)."""
        needed = resolve(metric_names(query.expr)) & BLACKOUT_METRICS
        deadline = time.monotonic() + QUERY_TIMEOUT
        while True:
            sampled, declared = self.scrape()
            absent, empty = needed - declared, (needed & declared) - sampled
            if absent or not empty or time.monotonic() > deadline:
                return absent, empty
            time.sleep(0.5)


def prometheus_config(tmp: Path, scrape: str) -> Path:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"  # the expressions are the shipped ones; only evaluation is faster
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yml")],
        "scrape_configs": [{"job_name": "curfew", "static_configs": [{"targets": [scrape]}]}],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


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
    prometheus: subprocess.Popen[bytes] | None = None
    try:
        lab = loop.run(exits.enter_async_context(Lab(parse_scenario(data), tmp / "lab")), 30)
        config = daemon_config(lab, tmp, f"sqlite:///{tmp / 'db' / 'curfew.db'}", interval=3)
        daemon = Daemon(tmp / "curfew.yaml", config)
        loop.run(daemon.start(), 40)

        port = free_port()
        assert PROMETHEUS is not None
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={prometheus_config(tmp, config['metrics']['listen'])}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "prometheus.log").open("wb"),
        )
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as api:
            live = Stack(daemon, api)

            def ready() -> bool:
                assert prometheus is not None and prometheus.poll() is None, (
                    tmp / "prometheus.log"
                ).read_text()
                with contextlib.suppress(httpx.TransportError):
                    return api.get("/-/ready").status_code == 200
                return False

            live.wait("Prometheus ready", ready, 30)
            live.wait(
                "the daemon's target up",
                lambda: any(
                    t["health"] == "up" for t in api.get("/api/v1/targets").json()["data"]["activeTargets"]
                ),
                30,
            )
            # What the dashboard is about, scraped: a block, a cut-off vantage, and reachable pairs.
            for expr in (
                f'curfew_probe_verdict{{vantage="{CENSORED}",target="site",verdict="tls_blocked"}} == 1',
                f'curfew_probe_verdict{{vantage="{CUT_OFF}",verdict="vantage_down"}} == 1',
                f'curfew_probe_success{{vantage="{CONTROL_VANTAGE}"}} == 1',
                "curfew_probe_throughput_bytes_per_second",
            ):
                live.wait(expr, lambda expr=expr: bool(live.query(expr)), 60)
            yield live
    finally:
        if prometheus is not None:
            prometheus.terminate()
            try:
                prometheus.wait(15)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(5)
        if daemon is not None:
            with contextlib.suppress(Exception):
                loop.run(daemon.stop(), 40)
            loop.run(daemon.kill(), 10)
        loop.run(exits.aclose(), 30)
        loop.close()


@pytest.mark.parametrize("query", QUERIES, ids=[q.where for q in QUERIES])
def test_dashboard_query_returns_data(stack: Stack, query: Query) -> None:
    absent, empty = stack.missing(query)
    if absent:
        pytest.skip(
            f"{query.where} reads {', '.join(sorted(absent))}, which the daemon does not export yet "
            "(the blackout collector is not wired into curfew run)"
        )
    if empty:
        # A recurring schedule needs days of history, which a live run of seconds does not have.
        pytest.skip(f"{query.where} reads {', '.join(sorted(empty))}: declared, but no sample yet")
    expr = substitute(query.expr, VALUES)
    results: list[dict[str, Any]] = []

    def has_data() -> bool:
        results[:] = stack.query(expr)
        return bool(results)

    stack.wait(f"data for {query.where}: {expr}", has_data, QUERY_TIMEOUT)


@pytest.mark.parametrize(("name", "selector", "label"), list(variable_selectors(DASHBOARD)))
def test_dashboard_variable_lists_the_lab(stack: Stack, name: str, selector: str, label: str) -> None:
    """label_values() as Grafana asks it: /api/v1/label/<label>/values?match[]=<selector>."""
    params = {"match[]": substitute(selector, VALUES)} if selector else {}
    values = set(stack.api.get(f"/api/v1/label/{label}/values", params=params).json()["data"])
    expected = {"vantage": {CENSORED, CUT_OFF, CONTROL_VANTAGE}, "target": {"site", "wiki"}}[name]
    assert values == expected


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    def evaluated() -> bool:
        groups = stack.api.get("/api/v1/rules").json()["data"]["groups"]
        return bool(groups) and all(rule["lastEvaluation"] > "2000" for g in groups for rule in g["rules"])

    stack.wait("every rule evaluated", evaluated, 15)
    groups = stack.api.get("/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == sum(1 for _ in _rules_in_file())
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def _rules_in_file() -> Iterator[dict[str, Any]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        yield from group["rules"]


def test_recording_rules_see_the_lab(stack: Stack) -> None:
    blocked = f'curfew:blocked_pairs:count{{vantage="{CENSORED}",verdict="tls_blocked"}}'
    stack.wait(blocked, lambda: bool(stack.query(blocked)), QUERY_TIMEOUT)
    assert float(stack.query(blocked)[0]["value"][1]) == 1
    ratio = f'curfew:reachability:ratio_1h{{vantage="{CONTROL_VANTAGE}",target="wiki"}}'
    stack.wait(ratio, lambda: bool(stack.query(ratio)), QUERY_TIMEOUT)
    assert float(stack.query(ratio)[0]["value"][1]) == 1
