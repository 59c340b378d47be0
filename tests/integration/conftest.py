"""Run the real probe against the lab: helpers shared by the technique tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.config import parse_config
from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from probe.model import Result
from probe.round import judge, measure_round

CENSORED = "censored"
CONTROL_VANTAGE = "control"

# Short deadlines so the failure paths end quickly; the bulk download is capped at ~2 s.
FAST_PROBE: dict[str, Any] = {
    "timeouts": {
        "dns": 1.0,
        "tcp_connect": 1.0,
        "tls_handshake": 1.0,
        "http_request": 2.0,
        "throughput": 4.0,
        "total": 8.0,
    },
    "throughput_max_seconds": 1.5,
    "throughput_max_bytes": 2 * 1024 * 1024,
    "throughput_sample_interval": 0.1,
    "idle_reset_wait": 0.3,
}


def scenario(
    rules: Sequence[dict[str, Any]] = (), targets: Sequence[dict[str, Any]] = (), **extra: Any
) -> dict[str, Any]:
    """A scenario with one censored vantage, one control vantage, `site` and a control target."""
    base_targets = [
        {
            "name": "site",
            "hosts": ["www.site.lab"],
            "address": "127.0.3.1",
            "port": 0,
            "title": "The Site",
            "bulk_bytes": 1 << 20,
        },
        {
            "name": "wiki",
            "hosts": ["www.wiki.lab"],
            "address": "127.0.3.2",
            "port": 0,
            "title": "Wiki",
            "control": True,
            "bulk_bytes": 1 << 20,
        },
    ]
    data: dict[str, Any] = {
        "name": "test",
        "timezone": "UTC",
        "dns": {"listen": "127.0.0.1:0"},
        "vantages": [
            {"name": CENSORED, "address": "127.0.0.2"},
            {"name": CONTROL_VANTAGE, "address": "127.0.0.9", "control": True},
        ],
        "targets": base_targets + list(targets),
        "rules": list(rules),
    }
    data.update(extra)
    return data


async def probe_lab(
    tmp_path: Path, scenario_data: dict[str, Any], probe: dict[str, Any] | None = None
) -> dict[tuple[str, str], Result]:
    """Start the lab, probe every vantage x target once, judge, stop the lab."""
    async with Lab(parse_scenario(scenario_data), tmp_path) as lab:
        config_data = lab.curfew_config()
        config_data["probe"] = probe if probe is not None else FAST_PROBE
        config = parse_config(config_data)
        pairs = [(v, t) for v in config.vantages for t in config.targets]
        measurements = await measure_round(config, pairs)
    return {(r.measurement.vantage, r.measurement.target): r for r in judge(config, measurements)}


def summary(result: Result) -> tuple[str, str | None, str | None]:
    return result.analysis.verdict, result.analysis.operation, result.analysis.failure
