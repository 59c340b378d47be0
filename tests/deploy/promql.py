"""What the shipped Prometheus rules and Grafana dashboard ask of curfew's metrics.

`metric_names` reads the metric names out of a PromQL expression (well enough for our own
queries: selectors, functions, aggregations, binary operators, Grafana's $variables) so the
static tests can check every name against what the daemon exports, and the live test can tell
which panels wait on a metric the daemon does not export yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from probe.metrics import families

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "curfew-dashboard.json"

BLACKOUT_METRICS = frozenset(
    {
        "curfew_blackout_active",
        "curfew_blackout_started_timestamp_seconds",
        "curfew_blackouts_total",
        "curfew_hourly_reachability_ratio",
        "curfew_recurring_blackout_info",
        "curfew_recurring_vantage_shutdown_info",
        "curfew_vantage_shutdown_active",
        "curfew_vantage_shutdown_started_timestamp_seconds",
        "curfew_vantage_shutdowns_total",
    }
)
"""The episode and pattern metrics (issue 4), exported once the blackout collector is wired."""
DAEMON_METRICS = frozenset({"curfew_background_task_failures_total"})
"""The daemon's own (probe.daemon.supervisor), beside the families in probe.metrics."""

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def exported_metrics() -> frozenset[str]:
    """Every sample name of the families in probe.metrics.families, plus BLACKOUT_METRICS and
    DAEMON_METRICS."""
    names = {
        fam.name + suffix
        for fam in vars(families).values()
        if isinstance(fam, families.Family)
        for suffix in _SUFFIXES[fam.kind]
    }
    return frozenset(names | BLACKOUT_METRICS | DAEMON_METRICS)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[\w$]+")
_NAME = re.compile(r"(?<![\w.$:])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects.

    >>> sorted(metric_names('sum by (verdict) (rate(curfew_probe_runs_total{vantage=~"$v"}[5m])) / up'))
    ['curfew_probe_runs_total', 'up']
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _OFFSET.sub("", text)
    return {
        m[0]
        for m in _NAME.finditer(text)
        if m[0].lower() not in _KEYWORDS and not text[m.end() :].lstrip().startswith("(")  # a function
    }


def load_rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return data


def rules() -> Iterator[dict[str, Any]]:
    for group in load_rules()["groups"]:
        yield from group["rules"]


def recorded() -> dict[str, set[str]]:
    """Each recording rule's name -> the metric names its expression reads."""
    return {rule["record"]: metric_names(rule["expr"]) for rule in rules() if "record" in rule}


def resolve(names: set[str]) -> set[str]:
    """Metric names with recording rules replaced by the metrics they are computed from."""
    rec = recorded()
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in rec:
            todo.extend(rec[name] - out)
        out.add(name)
    return {name for name in out if name not in rec}


@dataclass(frozen=True)
class Query:
    """One PromQL query of the dashboard: a panel target, a variable or an annotation."""

    where: str  # e.g. "panel 7 'Active blackouts' A"
    expr: str
    instant: bool


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} {panel['title']!r} {target['refId']}"
            yield Query(where, target["expr"], bool(target.get("instant")))


def annotation_queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield Query(f"annotation {annotation['name']!r}", annotation["expr"], False)


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def variable_selectors(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(variable name, series selector, label) for each label_values() query variable."""
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query.strip())
        assert match is not None, f"variable {var['name']}: not a label_values() query: {query}"
        yield var["name"], match["selector"] or "", match["label"]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's $name and ${name} variables (longest names first)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr
