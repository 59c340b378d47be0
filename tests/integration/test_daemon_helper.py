"""`curfew run` with the control from a test helper only: the lab serves `curfew helper` on the
control's address, the config has `helpers:` and no control vantage; the daemon's verdicts, the
control kept with each stored measurement and the control-failure counter, end to end."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from tests.daemon.harness import Daemon, daemon_config, metric, query
from tests.integration.conftest import CENSORED, scenario

NOON = dt.datetime(2019, 5, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lab]:
    cdn = {
        "name": "cdn",
        "hosts": ["cdn.site.lab"],
        "address": "127.0.3.5",
        "port": 0,
        "geo": {CENSORED: "127.0.3.6"},
    }
    rules = [
        {"action": "tls_reset", "vantages": [CENSORED], "targets": ["site"]},
        {"action": "tcp_drop", "vantages": [CENSORED], "targets": ["cdn"]},
    ]
    data = scenario(rules, targets=[cdn])
    if getattr(request, "param", "helper") == "helper":
        data["vantages"][1].update(helper=True, helper_port=0)
    for target in data["targets"]:
        target["bulk"] = False
    async with Lab(parse_scenario(data), tmp_path / "lab", clock=lambda: NOON) as running:
        yield running


async def stored(database: str, target: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await query(
        database,
        "SELECT verdict, observations FROM measurements WHERE vantage = :v AND target = :t",
        v=CENSORED,
        t=target,
    )
    return [(r[0], r[1] if isinstance(r[1], dict) else orjson.loads(r[1])) for r in rows]


async def test_the_daemon_judges_against_the_helper_and_keeps_its_answer(
    lab: Lab, tmp_path: Path, database_url: str
) -> None:
    config = daemon_config(lab, tmp_path, database_url)
    assert "helpers" in config and not any(v["control"] for v in config["vantages"])
    daemon = Daemon(tmp_path / "curfew.yaml", config)
    try:
        await daemon.start()

        async def judged() -> bool:
            return all([await stored(database_url, t) for t in ("site", "cdn")])

        await daemon.wait_for(judged, 30, "measurements of site and cdn")
        samples = await daemon.scrape()
    finally:
        await daemon.stop()
    (site_verdict, site), *_ = await stored(database_url, "site")
    assert site_verdict == "tls_blocked" and site["x_control"]["source"] == f"helper:{lab.helper_urls[0]}"
    assert site["control"]["tls_handshake"] and site["control_failure"] is None
    # The geo-DNS address only the vantage resolved: the helper validated it, so SYN-dropped is tcp.
    (cdn_verdict, cdn), *_ = await stored(database_url, "cdn")
    assert cdn_verdict == "tcp_blocked"
    assert cdn["control"]["ip_info"]["127.0.3.6"]["flags"] & 8
    assert metric(samples, "curfew_control_failures_total", helper="127.0.0.9", reason="timeout") == 0


@pytest.mark.parametrize("lab", ["control vantage"], indirect=True)
async def test_the_daemon_with_a_control_vantage_reaches_the_vantage_addresses_too(
    lab: Lab, tmp_path: Path, database_url: str
) -> None:
    # Today's config keys: a control vantage, no helpers. It connects to the geo-DNS address
    # only the censored vantage resolved, as a helper would: SYN-dropped there is tcp_blocked.
    daemon = Daemon(tmp_path / "curfew.yaml", daemon_config(lab, tmp_path, database_url))
    try:
        await daemon.start()

        async def judged() -> bool:
            return all([await stored(database_url, t) for t in ("site", "cdn")])

        await daemon.wait_for(judged, 30, "measurements of site and cdn")
    finally:
        await daemon.stop()
    (site_verdict, site), *_ = await stored(database_url, "site")
    assert (site_verdict, site["x_control"]["source"]) == ("tls_blocked", "vantage:control")
    (cdn_verdict, cdn), *_ = await stored(database_url, "cdn")
    assert cdn_verdict == "tcp_blocked", cdn["x_control"]
    assert cdn["control"]["tls_handshake"][f"127.0.3.6:{lab.target_port('cdn')}"]["status"] is True
