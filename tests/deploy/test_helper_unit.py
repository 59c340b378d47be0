"""deploy/systemd/curfew-helper.service: systemd accepts it, its sandbox is as tight as the daemon's,
and its command line is one `curfew helper` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.cli import parser
from probe.helper.settings import load_helper_file
from tests.deploy.test_systemd_unit import EXEC_START, MAX_EXPOSURE, ROOT, _run, _settings, needs_analyze

UNIT = ROOT / "deploy" / "systemd" / "curfew-helper.service"


@needs_analyze
def test_exposure_is_at_most_2_0() -> None:
    import re

    result = _run("security", "--offline=yes", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security cannot run here: {result.stderr.strip()[:200]}")
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@needs_analyze
def test_systemd_verify_reports_nothing(tmp_path: Path) -> None:
    curfew = tmp_path / "curfew"
    curfew.write_text("#!/bin/sh\n")
    curfew.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(EXEC_START, str(curfew)))
    result = _run("verify", "--no-pager", str(unit))
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and str(unit) not in output:
        pytest.skip(f"systemd-analyze verify cannot run here: {output[:200]}")
    assert result.returncode == 0 and output == "", output


def test_unit_runs_the_helper_with_the_shipped_config() -> None:
    settings = _settings(UNIT.read_text())
    (command,) = settings["ExecStart"]
    assert command == f"{EXEC_START} helper --config /etc/curfew/helper.yaml"
    args = parser().parse_args([*command.split()[1:-2], "--config", str(ROOT / "config" / "helper.yaml")])
    assert args.command == "helper"
    assert settings["Type"] == ["notify"]  # `curfew helper` sends READY=1 once it listens
    assert set(settings["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert settings["CapabilityBoundingSet"] == [""] and settings["NoNewPrivileges"] == ["yes"]
    assert "PrivateNetwork" not in settings  # it measures the Internet


def test_the_shipped_helper_config_is_valid_and_safe() -> None:
    config = load_helper_file(ROOT / "config" / "helper.yaml", {})
    assert config.helper.allow_private is False
    assert config.helper.metrics_listen is not None and config.helper.metrics_listen.startswith("127.0.0.1:")
    assert config.probe.timeouts.total <= config.helper.request_timeout
