"""Kernel-level TCP blocking (nftables in a throwaway network namespace): the real probe and
lab run inside the namespace as separate processes, the kernel drops or resets the SYNs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from probe.lab.netns import Namespace, namespace, unavailable_reason

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"netns: {unavailable_reason()}"),
]

SCENARIO = {
    "name": "kernel",
    "dns": {"listen": "127.0.0.1:0"},
    "vantages": [
        {"name": "censored", "address": "127.0.0.2"},
        {"name": "control", "address": "127.0.0.9", "control": True},
    ],
    "targets": [
        {"name": "site", "hosts": ["www.site.lab"], "address": "127.0.3.1", "port": 443, "bulk": False},
        {
            "name": "wiki",
            "hosts": ["www.wiki.lab"],
            "address": "127.0.3.2",
            "port": 443,
            "control": True,
            "bulk": False,
        },
    ],
}
CURFEW = [sys.executable, "-m", "probe.cli"]


def start_lab(ns: Namespace, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    scenario = tmp_path / "kernel.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    state = tmp_path / "state"
    proc = subprocess.Popen(
        ns.argv(*CURFEW, "lab", "serve", "--scenario", str(scenario), "--state-dir", str(state)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).parents[2],
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "config written to" in line:
            config = state / "curfew.yaml"
            data = yaml.safe_load(config.read_text())
            data["probe"] = {"timeouts": {"tcp_connect": 1.0, "tls_handshake": 1.0, "total": 5.0}}
            config.write_text(yaml.safe_dump(data))
            return proc, config
        if not line and proc.poll() is not None:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the lab did not start inside the namespace")


def probe_once(ns: Namespace, config: Path) -> dict[tuple[str, str], dict[str, object]]:
    out = ns.run(*CURFEW, "probe", "--config", str(config), "--once", "--json", timeout=60)
    return {(r["vantage"], r["target"]): r for r in map(json.loads, out.stdout.splitlines())}


@pytest.mark.parametrize(
    ("rule", "failure"),
    [("reset_syn", "connection_refused"), ("drop_syn", "generic_timeout_error")],
)
def test_kernel_tcp_blocking_is_tcp_blocked(tmp_path: Path, rule: str, failure: str) -> None:
    with namespace() as ns:
        lab, config = start_lab(ns, tmp_path)
        try:
            getattr(ns, rule)("127.0.0.2", "127.0.3.1", 443)
            records = probe_once(ns, config)
        finally:
            os.killpg(lab.pid, signal.SIGTERM)
            lab.wait(timeout=10)
    site = records[("censored", "site")]
    assert (site["verdict"], site["operation"], site["failure"]) == ("tcp_blocked", "tcp_connect", failure)
    assert records[("control", "site")]["verdict"] == "ok"
    assert records[("censored", "wiki")]["verdict"] == "ok"
