"""A vantage resolving over DNS-over-HTTPS: same answers, same censor rules, recorded as doh."""

from __future__ import annotations

from pathlib import Path

from probe.config import parse_config
from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from probe.round import judge, measure_pairs
from tests.integration.conftest import CENSORED, FAST_PROBE, scenario


async def test_doh_resolver_sees_the_censors_dns_rules(tmp_path: Path) -> None:
    rules = [{"action": "dns_nxdomain", "vantages": [CENSORED], "targets": ["site"]}]
    async with Lab(parse_scenario(scenario(rules)), tmp_path) as lab:
        data = lab.curfew_config()
        data["probe"] = FAST_PROBE
        doh_url = lab.doh_url
        for vantage in data["vantages"]:
            vantage["resolver"] = lab.doh_url
        config = parse_config(data)
        pairs = [(v, t) for v in config.vantages for t in config.targets]
        results = {
            (r.measurement.vantage, r.measurement.target): r
            for r in judge(config, await measure_pairs(config, pairs))
        }
    site = results[(CENSORED, "site")]
    assert site.measurement.dns is not None
    assert site.measurement.dns.engine == "doh"
    assert site.measurement.dns.resolver == doh_url
    assert (site.analysis.verdict, site.analysis.operation, site.analysis.failure) == (
        "dns_blocked",
        "dns",
        "dns_nxdomain_error",
    )
    wiki = results[(CENSORED, "wiki")]
    assert wiki.analysis.verdict == "ok"
    assert wiki.measurement.dns is not None and wiki.measurement.dns.answers == ("127.0.3.2",)
    assert results[("control", "site")].analysis.verdict == "ok"


async def test_doh_server_that_is_gone_is_a_recorded_failure(tmp_path: Path) -> None:
    config = parse_config(
        {
            "probe": FAST_PROBE,
            "vantages": [{"name": "v", "resolver": "https://127.0.0.1:9/dns-query"}],
            "targets": [{"name": "t", "url": "https://www.site.lab/"}],
        }
    )
    (m,) = await measure_pairs(config, [(config.vantages[0], config.targets[0])])
    assert m.dns is not None and m.dns.failure is not None
    assert m.dns.failure in ("connection_refused", "generic_timeout_error"), m.dns.failure
