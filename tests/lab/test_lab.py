"""The facade: the curfew config it hands the probe, the serve entry point, clean shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from pathlib import Path

import pytest

from probe.config import load_config, parse_config
from probe.lab import Lab, Scenario, load_scenario, serve
from probe.lab.lab import running_from, target_url


async def test_curfew_config_is_valid_and_points_at_the_lab(lab: Lab, tmp_path: Path) -> None:
    config = parse_config(lab.curfew_config())
    host, port = lab.dns_address
    censored = config.vantage("censored")
    assert censored.source_address == "127.0.0.2"
    assert censored.resolver == f"{host}:{port}"
    assert censored.timezone == "Asia/Almaty"
    assert config.vantage("control").control
    assert config.tls.ca_bundle == lab.ca_pem_path
    open_site = config.target("open")
    assert open_site.url == f"https://open.lab:{lab.target_port('open')}/"
    assert open_site.throughput_url == f"https://open.lab:{lab.target_port('open')}/bulk"
    assert config.target("wiki").control
    assert config.target("news").throughput_url is None
    assert "warning" not in {t.name for t in config.targets}  # a helper site, not probed
    written = lab.write_config(tmp_path / "curfew.yaml")
    assert load_config(written) == config


def test_default_ports_are_left_out_of_urls() -> None:
    scenario = load_scenario("kazakhstan-2019")
    facebook, news = scenario.target("facebook"), scenario.target("news")
    assert target_url(facebook, 443) == "https://www.facebook.com/"
    assert target_url(facebook, 8443, "/bulk") == "https://www.facebook.com:8443/bulk"
    assert target_url(news, 80) == "http://news.lab/"


async def test_close_frees_every_port(scenario: Scenario, tmp_path: Path) -> None:
    async with Lab(scenario, tmp_path) as lab:
        port = lab.target_port("open")
        dns_port = lab.dns_address[1]
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.3.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", dns_port))  # free again


async def test_serve_runs_until_cancelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.ensure_future(serve("smoke", tmp_path, dt.datetime(2019, 5, 9, 8, tzinfo=dt.UTC)))
    config_path = tmp_path / "curfew.yaml"
    for _ in range(100):
        if config_path.exists():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(load_config(config_path).vantages) == 2
    assert f"config written to {config_path}" in capsys.readouterr().out


def test_running_from_starts_at_the_given_time() -> None:
    ticks = iter([100.0, 160.0])
    clock = running_from(
        dt.datetime(2019, 5, 9, 13, tzinfo=dt.timezone(dt.timedelta(hours=6))), lambda: next(ticks)
    )
    assert clock() == dt.datetime(2019, 5, 9, 7, 1, tzinfo=dt.UTC)


def test_set_time_refuses_naive(scenario: Scenario, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        Lab(scenario, tmp_path).set_time(dt.datetime(2019, 5, 9))
