"""A vantage reached through a proxy (SOCKS5 or HTTP CONNECT): DNS happens at the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.config import parse_config
from probe.lab.lab import Lab
from probe.lab.proxy import LabProxy
from probe.lab.scenario import parse_scenario
from probe.round import judge, measure_pairs
from tests.integration.conftest import CENSORED, FAST_PROBE, scenario


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_vantage_behind_a_proxy_sees_the_network_from_the_proxy(tmp_path: Path, scheme: str) -> None:
    rules = [{"action": "tls_reset", "vantages": [CENSORED], "targets": ["site"]}]
    async with Lab(parse_scenario(scenario(rules)), tmp_path) as lab:
        # The proxy goes out from the censored vantage's address: the probe must see its block.
        proxy = LabProxy("127.0.0.1", "127.0.0.2", lab.dns_address)
        await proxy.start()
        try:
            data = lab.curfew_config()
            data["probe"] = FAST_PROBE
            data["vantages"].append({"name": "remote", "proxy": proxy.url(scheme), "resolver": "system"})
            config = parse_config(data)
            pairs = [(config.vantage("remote"), t) for t in config.targets]
            pairs += [(config.vantage("control"), t) for t in config.targets]
            results = {
                (r.measurement.vantage, r.measurement.target): r
                for r in judge(config, await measure_pairs(config, pairs))
            }
        finally:
            await proxy.close()
    site = results[("remote", "site")]
    assert site.measurement.dns is not None and site.measurement.dns.engine == "proxy"
    assert site.measurement.proxy == proxy.url(scheme)
    # The proxy sees the reset and closes our side politely: through a proxy a reset reads as EOF.
    assert (site.analysis.verdict, site.analysis.operation, site.analysis.failure) == (
        "tls_blocked",
        "tls_handshake",
        "eof_error",
    )
    wiki = results[("remote", "wiki")]
    assert wiki.analysis.verdict == "ok"
    assert wiki.measurement.tls[0].valid is True


async def test_a_dead_proxy_is_a_recorded_failure(tmp_path: Path) -> None:
    config = parse_config(
        {
            "probe": FAST_PROBE,
            "vantages": [{"name": "remote", "proxy": "socks5://127.0.0.1:9"}],
            "targets": [{"name": "t", "url": "https://www.site.lab/"}],
        }
    )
    (m,) = await measure_pairs(config, [(config.vantages[0], config.targets[0])])
    assert m.tcp[0].failure == "connection_refused"


async def test_proxy_credentials_are_never_recorded(tmp_path: Path) -> None:
    config = parse_config(
        {
            "probe": FAST_PROBE,
            "vantages": [{"name": "remote", "proxy": "socks5://user:secret@127.0.0.1:9"}],
            "targets": [{"name": "t", "url": "https://www.site.lab/"}],
        }
    )
    (m,) = await measure_pairs(config, [(config.vantages[0], config.targets[0])])
    assert "secret" not in repr(m.to_dict())
    assert m.proxy == "socks5://127.0.0.1:9"
