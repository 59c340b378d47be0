"""deploy/prometheus: the rules load, their unit tests pass, and they only read metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.promql import RULES, RULES_TEST, exported_metrics, metric_names, recorded, rules

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian: prometheus)")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert promtool is not None
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_check_rules_accepts_the_rules() -> None:
    done = run_promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_rule_unit_tests_pass() -> None:
    done = run_promtool("test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_read_only_metrics_curfew_exports() -> None:
    known = exported_metrics() | set(recorded())
    for rule in rules():
        exprs = [rule["expr"]]
        # Annotation templates query Prometheus too: printf "selector{vantage='%s'}" ... | query.
        for text in rule.get("annotations", {}).values():
            exprs += [q.replace("%s", "x") for q in _printf_queries(text)]
        for expr in exprs:
            unknown = metric_names(expr) - known - {"ALERTS"}
            assert not unknown, f"{rule.get('alert') or rule['record']}: unknown metrics {unknown} in {expr}"


def _printf_queries(template: str) -> list[str]:
    return re.findall(r'printf\s+"((?:[^"\\]|\\.)*)"', template)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alerting rule (name + its labels) fires in some rule test, and each alert name is
    also checked at a time when it must not fire."""
    tests: list[dict[str, Any]] = [
        case
        for group in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]
    quiet = {case["alertname"] for case in tests if not case.get("exp_alerts")}
    fired = [
        (case["alertname"], alert.get("exp_labels", {}))
        for case in tests
        for alert in case.get("exp_alerts") or []
    ]
    for rule in rules():
        if "alert" not in rule:
            continue
        name, labels = rule["alert"], rule.get("labels", {})
        assert any(n == name and labels.items() <= got.items() for n, got in fired), (
            f"{name} {labels} never fires in {RULES_TEST.name}"
        )
        assert name in quiet, f"{name} is never checked quiet in {RULES_TEST.name}"


def test_recording_rules_follow_the_level_metric_operation_convention() -> None:
    for name in recorded():
        assert name.startswith("curfew:") and name.count(":") == 2, name


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("curfew_probe_success", {"curfew_probe_success"}),
        (
            'sum by (verdict) (rate(curfew_probe_runs_total{vantage=~"$vantage"}[$__rate_interval]))',
            {"curfew_probe_runs_total"},
        ),
        ("histogram_quantile(0.9, sum by (phase, le) (rate(x_bucket[5m])))", {"x_bucket"}),
        ("a * on (vantage, target) group_left (verdict) b == 1 and on (vantage) c", {"a", "b", "c"}),
        ('label_replace(r, "hour", "0$1", "hour", "([0-9])")', {"r"}),
        ("curfew:reachability:ratio_1h offset 1h > 0.5e3", {"curfew:reachability:ratio_1h"}),
        ("time() - max(t) > 900", {"t"}),
        ("absent(curfew_build_info)", {"curfew_build_info"}),
    ],
)
def test_metric_names_finds_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
