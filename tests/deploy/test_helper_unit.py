"""deploy/systemd/curfew-helper.service: its command line is one `curfew helper` accepts (systemd
verify and the exposure bound run for both units in test_systemd_unit.py)."""

from __future__ import annotations

from probe.cli import parser
from probe.helper.settings import load_helper_file
from tests.deploy.test_systemd_unit import EXEC_START, ROOT, _settings

UNIT = ROOT / "deploy" / "systemd" / "curfew-helper.service"


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
