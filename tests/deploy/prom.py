"""A real Prometheus (the Debian `prometheus` binary) for the dashboard tests.

`running_prometheus(tmp, scrape)` starts one on a free loopback port, scraping `scrape`
(host:port) every second with deploy/prometheus/rules.yml loaded, evaluation every second,
TSDB in `tmp`; it waits until the target is up and always stops the process.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.daemon.harness import free_port
from tests.deploy.promql import RULES

PROMETHEUS = shutil.which("prometheus")

# Grafana's variables as the tests fill them in: every vantage and target, short windows.
VALUES = {
    "vantage": ".*",
    "target": ".*",
    "__rate_interval": "15s",
    "__interval": "15s",
    "__range": "5m",
}
QUERY_TIMEOUT = 30.0  # seconds for one query to return data once the stack is up


@dataclass
class PromAPI:
    api: httpx.Client
    alive: Callable[[], None] = lambda: None  # raises if something the test needs has died

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now; the result vector (empty when there is no data)."""
        response = self.api.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body.get('error', response.text)}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait(self, what: str, check: Callable[[], Any], timeout: float = QUERY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self.alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)

    def wait_for_data(self, expr: str, timeout: float = QUERY_TIMEOUT) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []

        def has_data() -> bool:
            result[:] = self.query(expr)
            return bool(result)

        self.wait(f"data for {expr}", has_data, timeout)
        return result

    def rules(self) -> list[dict[str, Any]]:
        groups = self.api.get("/api/v1/rules").json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


def write_config(tmp: Path, scrape: str) -> Path:
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


@contextlib.contextmanager
def running_prometheus(tmp: Path, scrape: str, alive: Callable[[], None] = lambda: None) -> Iterator[PromAPI]:
    assert PROMETHEUS is not None
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={write_config(tmp, scrape)}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def check() -> None:
            assert proc.poll() is None, f"prometheus exited ({proc.returncode}):\n{log.read_text()}"
            alive()

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            prom = PromAPI(client, check)

            def ready() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return client.get("/-/ready").status_code == 200
                return False

            prom.wait("Prometheus ready", ready, 30)

            def target_up() -> bool:
                targets = client.get("/api/v1/targets").json()["data"]["activeTargets"]
                return any(t["health"] == "up" for t in targets)

            prom.wait(f"the scrape of {scrape} up", target_up, 30)
            yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
