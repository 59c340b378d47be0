"""deploy/systemd/curfew.service: systemd accepts it, its sandbox stays tight, and the daemon fits in it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "curfew.service"
UNITS = [UNIT, ROOT / "deploy" / "systemd" / "curfew-helper.service"]  # the daemon's and the helper's
EXEC_START = "/opt/curfew/bin/curfew"  # where deploy/systemd/INSTALL.md puts the venv
MAX_EXPOSURE = 2.0

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert analyze is not None
    return subprocess.run([analyze, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_is_at_most_2_0(unit: Path) -> None:
    result = _run("security", "--offline=yes", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security cannot run here: {result.stderr.strip()[:200]}")
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@needs_analyze
@pytest.mark.parametrize("shipped", UNITS, ids=lambda u: u.name)
def test_systemd_verify_reports_nothing(tmp_path: Path, shipped: Path) -> None:
    # verify insists that ExecStart= exists and is executable: point it at a stand-in.
    curfew = tmp_path / "curfew"
    curfew.write_text("#!/bin/sh\n")
    curfew.chmod(0o755)
    unit = tmp_path / shipped.name
    unit.write_text(shipped.read_text().replace(EXEC_START, str(curfew)))
    result = _run("verify", "--no-pager", str(unit))
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and str(unit) not in output:
        pytest.skip(f"systemd-analyze verify cannot run here: {output[:200]}")
    # Bad values are only warnings ("Failed to parse ..., ignoring") with exit status 0: any output fails.
    assert result.returncode == 0 and output == "", output


def test_unit_keeps_what_the_daemon_needs() -> None:
    settings = _settings(UNIT.read_text())
    assert settings["ExecStart"] == [f"{EXEC_START} run --config /etc/curfew/curfew.yaml"]
    # Debian 12 has systemd 252; Type=notify-reload needs 253, so reload is a plain SIGHUP.
    assert settings["Type"] == ["notify"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["StateDirectory"] == ["curfew"]  # -> $STATE_DIRECTORY, the default data_dir
    assert settings["ConfigurationDirectory"] == ["curfew"]
    assert settings["WatchdogSec"] == ["60"]
    families = set(settings["RestrictAddressFamilies"][0].split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX"}  # probes, and sd_notify/journald
    assert "PrivateNetwork" not in settings and "IPAddressDeny" not in settings  # it probes the Internet
    assert settings["MemoryDenyWriteExecute"] == ["yes"]  # see test_dependencies_run_under_...


def test_stop_timeout_outlasts_the_default_grace_period() -> None:
    from probe.config import load_config

    grace = load_config(ROOT / "config" / "curfew.yaml").grace_period
    timeout = float(_settings(UNIT.read_text())["TimeoutStopSec"][0])
    assert timeout >= grace + 10  # time to close the store after the drain


def test_dependencies_run_under_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes kills a process that maps W+X memory (a JIT, old libffi closures)."""
    here = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, str(here / "mdwe.py"), str(here / "mdwe_workload.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    if result.returncode == 77:
        pytest.skip("libseccomp is not available")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def _nofile() -> tuple[int, int]:
    values = _settings(UNIT.read_text()).get("LimitNOFILE", [])
    assert len(values) == 1, "LimitNOFILE is set once (systemd's default soft limit of 1024 is too low)"
    soft, _, hard = values[0].partition(":")
    return int(soft), int(hard or soft)


def test_the_descriptor_limit_fits_the_largest_config() -> None:
    from annotated_types import Le

    from probe.config import Config, ProbeSettings
    from probe.metrics.admission import RESERVE_MAX, Limits

    soft, hard = _nofile()
    ceiling = next(m.le for m in Config.model_fields["max_concurrency"].metadata if isinstance(m, Le))
    addresses = ProbeSettings.model_fields["max_addresses"].default
    # Each probe in flight holds up to max_addresses sockets; then the metrics server's connections and
    # the reserve it leaves free, and a few hundred for Python, the database pool and the journal.
    need = ceiling * addresses + Limits().max_connections + RESERVE_MAX + 256
    assert soft >= need, (soft, need)
    assert soft == hard  # the daemon may not raise its own (SystemCallFilter=~@resources)
    assert hard <= 1048576  # the kernel's default fs.nr_open: above it systemd cannot apply it
