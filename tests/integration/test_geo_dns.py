"""The shipped Kazakhstan scenario's geo-DNS case: kz-astana gets YouTube's CDN node nearer
Astana (another address than the control's), and that address is then SYN-dropped or
TLS-reset there. The control vantage connects to kz-astana's address too, as a helper does,
so the address is known genuine and the verdict names the layer, never DNS."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from probe.analysis.replay import rejudge
from probe.config import parse_config
from probe.lab.lab import Lab
from probe.lab.scenario import load_scenario, parse_scenario
from probe.model import Result
from probe.round import run_round
from probe.store.mapping import result_row
from tests.integration.conftest import FAST_PROBE, summary

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALMATY = dt.timezone(dt.timedelta(hours=6))
DAY = "2019-05-21"
QUIET = dt.datetime(2019, 5, 21, 10, 0, tzinfo=ALMATY)  # no rule applies
SYN_DROP = dt.datetime(2019, 5, 21, 12, 30, tzinfo=ALMATY)
TLS_RESET = dt.datetime(2019, 5, 21, 14, 30, tzinfo=ALMATY)
CDN_NODE = "127.0.1.23"


def geo_rule(action: str, start: str, end: str) -> dict[str, object]:
    return {
        "action": action,
        "vantages": ["kz-astana"],
        "targets": ["youtube"],
        "when": {"from": f"{DAY}T{start}:00+06:00", "until": f"{DAY}T{end}:00+06:00"},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    shipped = load_scenario("kazakhstan-2019").ephemeral()
    data = shipped.model_dump(mode="json")
    data["rules"] = [geo_rule("tcp_drop", "12:00", "13:00"), geo_rule("tls_reset", "14:00", "15:00")] + data[
        "rules"
    ]
    state: Path = tmp_path_factory.mktemp("geo-lab")
    async with Lab(parse_scenario(data), state, clock=lambda: QUIET.astimezone(dt.UTC)) as running:
        yield running


async def probe_at(lab: Lab, moment: dt.datetime) -> dict[tuple[str, str], Result]:
    lab.set_time(moment)
    data = lab.curfew_config()
    data["vantages"] = [v for v in data["vantages"] if v["name"] in ("kz-astana", "control")]
    data["targets"] = [t for t in data["targets"] if t["name"] in ("youtube", "wikipedia")]
    data["probe"] = FAST_PROBE
    results = await run_round(parse_config(data))
    return {(r.measurement.vantage, r.measurement.target): r for r in results}


async def test_geo_dns_node_that_validates_is_ok(lab: Lab) -> None:
    results = await probe_at(lab, QUIET)
    astana = results[("kz-astana", "youtube")]
    assert astana.measurement.dns is not None and astana.measurement.dns.answers == (CDN_NODE,)
    assert summary(astana) == ("ok", None, None), astana.analysis.reason
    assert astana.analysis.dns_consistency == "consistent"
    assert summary(results[("control", "youtube")]) == ("ok", None, None)


async def test_geo_dns_node_syn_dropped_is_tcp_blocked(lab: Lab) -> None:
    results = await probe_at(lab, SYN_DROP)
    astana = results[("kz-astana", "youtube")]
    assert summary(astana) == ("tcp_blocked", "tcp_connect", "generic_timeout_error"), astana.analysis.reason
    # The control vantage reached kz-astana's address and validated it for www.youtube.com.
    control = results[("control", "youtube")]
    assert [(t.address, t.valid) for t in control.measurement.tls if t.address == CDN_NODE] == [
        (CDN_NODE, True)
    ]
    assert summary(control) == ("ok", None, None)
    assert summary(results[("kz-astana", "wikipedia")]) == ("ok", None, None)


async def test_geo_dns_node_tls_reset_is_tls_blocked(lab: Lab) -> None:
    results = await probe_at(lab, TLS_RESET)
    astana = results[("kz-astana", "youtube")]
    assert summary(astana) == ("tls_blocked", "tls_handshake", "connection_reset"), astana.analysis.reason
    assert summary(results[("control", "youtube")]) == ("ok", None, None)


async def test_stored_verdicts_are_judged_again_from_the_stored_observations(lab: Lab) -> None:
    # What the store keeps (the observations JSON, the control inside it) is enough to judge
    # every verdict of these rounds again - the control vantage's own ones included.
    stored: dict[str, dict[str, object]] = {}
    judged: list[Result] = []
    for moment in (QUIET, SYN_DROP, TLS_RESET):
        for result in (await probe_at(lab, moment)).values():
            row = result_row(result)
            stored[result.measurement.uid] = orjson.loads(row["observations"])
            judged.append(result)
    for result in judged:
        again = rejudge(stored[result.measurement.uid], stored)
        assert again == result.analysis, (result.measurement.vantage, result.measurement.target)
    sources = {stored[r.measurement.uid]["x_control"]["source"] for r in judged}  # type: ignore[index]
    assert sources == {"vantage:control", None}
