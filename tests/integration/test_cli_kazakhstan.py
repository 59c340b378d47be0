"""`curfew lab serve` + `curfew probe --once --json` on the shipped Kazakhstan scenario, as a
user runs them (README): separate processes, the scenario's clock pinned to a moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

SCENARIOS = Path(__file__).parents[2] / "probe" / "lab" / "scenarios"
SCENARIO = SCENARIOS / "kazakhstan-2019.yaml"
HELPER_ONLY = SCENARIOS / "kazakhstan-2019-helper.yaml"
CURFEW = [sys.executable, "-m", "probe.cli"]


@pytest.fixture
def lab_at(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    def start(moment: str, scenario: Path = SCENARIO) -> Path:
        state = tmp_path / f"{scenario.stem}-{moment.replace(':', '')}"
        proc = subprocess.Popen(
            [
                *CURFEW,
                "lab",
                "serve",
                "--scenario",
                str(scenario),
                "--ephemeral",
                "--at",
                moment,
                "--state-dir",
                str(state),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        processes.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "config written to" in line:
                return state / "curfew.yaml"
            if not line and proc.poll() is not None:
                break
        raise AssertionError(f"lab did not start: {line!r}")

    yield start
    for proc in processes:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def probe_once(config: Path) -> dict[tuple[str, str], dict[str, object]]:
    out = subprocess.run(
        [*CURFEW, "probe", "--config", str(config), "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    return {(r["vantage"], r["target"]): r for r in records}


def verdicts(records: dict[tuple[str, str], dict[str, object]], vantage: str) -> dict[str, object]:
    return {target: r["verdict"] for (v, target), r in records.items() if v == vantage}


def test_an_evening_in_may_2019(lab_at) -> None:  # type: ignore[no-untyped-def]
    records = probe_once(lab_at("2019-05-20T20:30:00+06:00"))
    assert set(verdicts(records, "control").values()) == {"ok"}
    almaty = records[("kz-almaty", "facebook")]
    assert (almaty["verdict"], almaty["operation"], almaty["failure"]) == (
        "tls_blocked",
        "tls_handshake",
        "connection_reset",
    )
    mobile = records[("kz-mobile", "youtube")]
    assert mobile["verdict"] == "throttled" and mobile["operation"] == "throughput"
    assert isinstance(mobile["throughput_bps"], int) and 100_000 < mobile["throughput_bps"] < 200_000
    astana = records[("kz-astana", "facebook")]
    assert (astana["verdict"], astana["failure"]) == ("dns_blocked", "dns_nxdomain_error")
    for vantage in ("kz-almaty", "kz-astana", "kz-mobile"):
        assert records[(vantage, "wikipedia")]["verdict"] == "ok"
    for record in records.values():
        assert {
            "vantage",
            "target",
            "verdict",
            "failure",
            "operation",
            "tls_issuer",
            "throughput_bps",
            "observations",
        } <= set(record)


def test_the_july_2019_interception(lab_at) -> None:  # type: ignore[no-untyped-def]
    records = probe_once(lab_at("2019-07-25T12:00:00+06:00"))
    for vantage in ("kz-almaty", "kz-astana"):
        for target in ("facebook", "youtube"):
            record = records[(vantage, target)]
            assert (record["verdict"], record["failure"]) == ("tls_mitm", "ssl_unknown_authority"), (
                vantage,
                target,
            )
            assert record["tls_issuer"] == "C=KZ, CN=Security Certificate"
    assert records[("control", "facebook")]["tls_issuer"] == "CN=curfew lab root CA"


def test_election_day_shutdown(lab_at) -> None:  # type: ignore[no-untyped-def]
    records = probe_once(lab_at("2019-06-09T11:30:00+06:00"))
    for vantage in ("kz-almaty", "kz-astana", "kz-mobile"):
        assert set(verdicts(records, vantage).values()) == {"vantage_down"}, vantage
    assert set(verdicts(records, "control").values()) == {"ok"}


def test_an_evening_in_may_2019_with_the_control_from_a_helper(lab_at) -> None:  # type: ignore[no-untyped-def]
    # The helper-only variant: no control vantage in the config, `helpers:` instead.
    config = lab_at("2019-05-20T20:30:00+06:00", HELPER_ONLY)
    written = yaml.safe_load(config.read_text())
    assert not any(v["control"] for v in written["vantages"])
    assert [h["url"].startswith("http://127.0.0.9:") for h in written["helpers"]] == [True]
    records = probe_once(config)
    assert {v for v, _ in records} == {"kz-almaty", "kz-astana", "kz-mobile"}
    expected = {
        ("kz-almaty", "facebook"): ("tls_blocked", "connection_reset"),
        ("kz-almaty", "youtube"): ("throttled", None),
        ("kz-almaty", "news"): ("http_blocked", None),
        ("kz-astana", "facebook"): ("dns_blocked", "dns_nxdomain_error"),
        ("kz-astana", "youtube"): ("dns_blocked", "dns_bogon_error"),
        ("kz-astana", "news"): ("http_blocked", None),
        ("kz-mobile", "youtube"): ("throttled", None),
        ("kz-mobile", "instagram"): ("tls_blocked", "generic_timeout_error"),
    }
    for pair, (verdict, failure) in expected.items():
        record = records[pair]
        assert (record["verdict"], record["failure"]) == (verdict, failure), (pair, record["reason"])
        assert record["control_failure"] is None and record["control"] is not None, pair
    for vantage in ("kz-almaty", "kz-astana", "kz-mobile"):
        assert records[(vantage, "wikipedia")]["verdict"] == "ok"


DOWN = """
name: down-everywhere
timezone: UTC
dns: {listen: 127.0.0.1:0}
vantages:
  - {name: kz, address: 127.0.0.2}
  - {name: control, address: 127.0.0.9, control: true}
targets:
  - {name: site, hosts: [www.site.lab], address: 127.0.3.1, port: 0, bulk: false}
  - {name: gone, hosts: [gone.lab], address: 127.0.3.4, port: 0, down: true}
  - {name: wiki, hosts: [www.wiki.lab], address: 127.0.3.2, port: 0, control: true, bulk: false}
rules: []
"""


def test_the_control_vantage_is_judged_too(lab_at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # As a new user tried it: the target refuses connections everywhere. The control vantage
    # says the target is down (it came out tcp_blocked), and so does the censored one.
    scenario = tmp_path / "down-everywhere.yaml"
    scenario.write_text(DOWN)
    records = probe_once(lab_at("2019-05-20T12:00:00+00:00", scenario))
    for vantage in ("kz", "control"):
        record = records[(vantage, "gone")]
        assert (record["verdict"], record["operation"], record["failure"]) == (
            "target_down",
            "tcp_connect",
            "connection_refused",
        ), vantage
        assert records[(vantage, "site")]["verdict"] == "ok"


@pytest.mark.parametrize("scenario", [SCENARIO, HELPER_ONLY], ids=["control-vantage", "helper"])
def test_9_may_2019_the_geo_dns_node_is_syn_dropped_too(lab_at, scenario: Path) -> None:  # type: ignore[no-untyped-def]
    # kz-astana's YouTube answer is its own CDN node (127.0.1.23), dropped like the rest: the
    # control (the control vantage, or the helper) validated that address, so it is TCP.
    records = probe_once(lab_at("2019-05-09T14:00:00+06:00", scenario))
    astana = records[("kz-astana", "youtube")]
    assert astana["observations"]["dns"]["answers"] == ["127.0.1.23"]  # type: ignore[index]
    assert (astana["verdict"], astana["operation"], astana["failure"]) == (
        "tcp_blocked",
        "tcp_connect",
        "generic_timeout_error",
    ), astana["reason"]
