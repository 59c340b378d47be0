"""The geo-DNS case of the shipped helper-only variant (kazakhstan-2019-helper): no control
vantage, the control is `curfew helper` on 127.0.0.9. kz-astana sends its CDN node's address
with the question; the helper validates it for www.youtube.com (ip_info flag 8), so the node
SYN-dropped or TLS-reset at kz-astana is tcp_blocked / tls_blocked, never dns_blocked."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from probe.config import parse_config
from probe.helper.protocol import FLAG_RESOLVED_BY_PROBE, FLAG_VALID_FOR_DOMAIN
from probe.lab.lab import Lab
from probe.lab.scenario import load_scenario, parse_scenario
from probe.model import Result
from probe.round import run_round
from probe.store.mapping import result_row
from tests.integration.conftest import FAST_PROBE, summary
from tests.integration.test_geo_dns import CDN_NODE, QUIET, SYN_DROP, TLS_RESET, geo_rule

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    data = load_scenario("kazakhstan-2019-helper").ephemeral().model_dump(mode="json")
    data["rules"] = [geo_rule("tcp_drop", "12:00", "13:00"), geo_rule("tls_reset", "14:00", "15:00")] + data[
        "rules"
    ]
    state = tmp_path_factory.mktemp("geo-helper-lab")
    async with Lab(
        parse_scenario(data), state, clock=lambda: QUIET.astimezone(dt.UTC), helper_probe=FAST_PROBE
    ) as running:
        yield running


async def astana_youtube(lab: Lab, moment: dt.datetime) -> tuple[Result, dict[str, object]]:
    lab.set_time(moment)
    data = lab.curfew_config()
    assert not any(v["control"] for v in data["vantages"]) and data["helpers"]
    data["vantages"] = [v for v in data["vantages"] if v["name"] == "kz-astana"]
    data["targets"] = [t for t in data["targets"] if t["name"] in ("youtube", "wikipedia")]
    data["probe"] = FAST_PROBE
    results = {r.measurement.target: r for r in await run_round(parse_config(data))}
    youtube = results["youtube"]
    control = orjson.loads(result_row(youtube)["observations"])["control"]
    assert control is not None
    return youtube, control


def vouched(control: dict[str, object]) -> bool:
    info = control["ip_info"][CDN_NODE]  # type: ignore[index]
    return info["flags"] & (FLAG_RESOLVED_BY_PROBE | FLAG_VALID_FOR_DOMAIN) == (  # type: ignore[no-any-return]
        FLAG_RESOLVED_BY_PROBE | FLAG_VALID_FOR_DOMAIN
    )


async def test_helper_geo_dns_node_that_validates_is_ok(lab: Lab) -> None:
    youtube, control = await astana_youtube(lab, QUIET)
    assert summary(youtube) == ("ok", None, None), youtube.analysis.reason
    assert youtube.analysis.dns_consistency == "consistent" and vouched(control)


async def test_helper_geo_dns_node_syn_dropped_is_tcp_blocked(lab: Lab) -> None:
    youtube, control = await astana_youtube(lab, SYN_DROP)
    assert summary(youtube) == ("tcp_blocked", "tcp_connect", "generic_timeout_error"), (
        youtube.analysis.reason
    )
    assert vouched(control)


async def test_helper_geo_dns_node_tls_reset_is_tls_blocked(lab: Lab) -> None:
    youtube, control = await astana_youtube(lab, TLS_RESET)
    assert summary(youtube) == ("tls_blocked", "tls_handshake", "connection_reset"), youtube.analysis.reason
    assert vouched(control)
