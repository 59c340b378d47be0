"""deploy/grafana: the dashboard JSON and provisioning files, checked without Grafana.

The live test (test_dashboard_live.py) runs the same queries against a real Prometheus.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import (
    ROOT,
    annotation_queries,
    exported_metrics,
    load_dashboard,
    metric_names,
    panel_queries,
    panels,
    recorded,
    substitute,
    variable_selectors,
)

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# What Grafana puts in place of its variables; the static check only needs valid PromQL.
GRAFANA_VALUES = {
    "vantage": ".*",
    "target": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), ids


def test_every_panel_has_a_promql_target_on_the_ds_prometheus_datasource(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), f"{panel['title']} {target['refId']}: empty expr"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    boxes = [(p["title"], p["gridPos"]) for p in panels(dashboard)]
    for title, g in boxes:
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, title
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1 :]:
            apart = (
                ga["x"] + ga["w"] <= gb["x"]
                or gb["x"] + gb["w"] <= ga["x"]
                or ga["y"] + ga["h"] <= gb["y"]
                or gb["y"] + gb["h"] <= ga["y"]
            )
            assert apart, f"{a!r} overlaps {b!r}"


def test_variables_datasource_vantage_and_target(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    selectors = {name: (selector, label) for name, selector, label in variable_selectors(dashboard)}
    assert selectors["vantage"][1] == "vantage"
    assert selectors["target"][1] == "target"
    for name in ("vantage", "target"):
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_query_reads_only_exported_or_recorded_metrics(dashboard: dict[str, Any]) -> None:
    known = exported_metrics() | set(recorded())
    queries = [(q.where, q.expr) for q in (*panel_queries(dashboard), *annotation_queries(dashboard))]
    queries += [(f"variable {name}", selector) for name, selector, _ in variable_selectors(dashboard)]
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        assert names <= known, f"{where}: unknown metrics {names - known}"


@pytest.mark.parametrize(
    ("kind", "metric"),
    [
        ("state-timeline", "curfew_probe_success"),
        ("timeseries", "curfew:reachability:ratio_1h"),
        ("heatmap", "curfew_hourly_reachability_ratio"),
        ("table", "curfew_blackout_active"),
        ("table", "curfew_blackout_started_timestamp_seconds"),
        ("bargauge", "curfew_blackouts_total"),
        ("timeseries", "curfew_probe_phase_duration_seconds_bucket"),
        ("state-timeline", "curfew_vantage_shutdown_active"),
        ("table", "curfew_vantage_shutdowns_total"),
        ("table", "curfew_recurring_blackout_info"),
    ],
)
def test_the_panels_the_issue_asks_for_exist(dashboard: dict[str, Any], kind: str, metric: str) -> None:
    found = [
        panel["title"]
        for panel in panels(dashboard)
        if panel["type"] == kind and any(metric in metric_names(t["expr"]) for t in panel.get("targets", []))
    ]
    assert found, f"no {kind} panel reads {metric}"


def test_phase_timings_are_quantiles_by_phase(dashboard: dict[str, Any]) -> None:
    bucket = "curfew_probe_phase_duration_seconds_bucket"
    exprs = [q.expr for q in panel_queries(dashboard) if bucket in q.expr]
    assert exprs and all("histogram_quantile(" in e and "by (phase, le)" in e for e in exprs)


def test_the_heatmap_rows_are_local_hours_in_order(dashboard: dict[str, Any]) -> None:
    (heatmap,) = [p for p in panels(dashboard) if p["type"] == "heatmap"]
    (target,) = heatmap["targets"]
    # Rows are ordered by name: "0".."9" are padded so "09" sorts before "10".
    assert "label_replace(curfew_hourly_reachability_ratio" in target["expr"] and '"0$1"' in target["expr"]
    assert target["legendFormat"] == "{{hour}}"
    assert heatmap["options"]["calculate"] is False
    assert heatmap["options"]["filterValues"]["le"] < 0, "a fully blocked hour (0) must not be hidden"


promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian: prometheus)")
def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query (variables substituted) as a recording rule's expression."""
    queries = [*panel_queries(dashboard), *annotation_queries(dashboard)]
    rules = [
        {"record": f"dashboard:query:{i}", "expr": substitute(q.expr, GRAFANA_VALUES)}
        for i, q in enumerate(queries)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert promtool is not None
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard_folder() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    dashboards = yaml.safe_load((PROVISIONING / "dashboards" / "curfew.yml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
