"""`curfew helper` against the lab over real sockets (with --allow-private: the lab is loopback).

The helper sits where the lab's control vantage is (source address 127.0.0.9, the lab's
resolver and CA); the censored vantage's own measurement is judged against its answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from probe.analysis.verdict import analyze
from probe.config import parse_config
from probe.engine import measure
from probe.helper.control import control_measurement
from probe.helper.protocol import (
    FLAG_BOGON,
    FLAG_RESOLVED_BY_PROBE,
    FLAG_RESOLVED_BY_TH,
    FLAG_VALID_FOR_DOMAIN,
    THRequest,
    THResponse,
    dumps,
    parse_response,
)
from probe.helper.server import RunningHelper
from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from probe.model import Measurement
from probe.vantage import vantage_network
from tests.helper.conftest import helper, post
from tests.integration.conftest import CENSORED, FAST_PROBE, scenario

HELPER_ADDRESS = "127.0.0.9"  # the scenario's control vantage


def rule(action: str, **params: object) -> dict[str, object]:
    return {"action": action, "vantages": [CENSORED], "targets": ["site"], **params}


@asynccontextmanager
async def lab_and_helper(
    tmp_path: Path, rules: list[dict[str, Any]]
) -> AsyncIterator[tuple[Lab, RunningHelper]]:
    async with Lab(parse_scenario(scenario(rules)), tmp_path) as lab:
        host, port = lab.dns_address
        async with helper(
            probe=FAST_PROBE,
            allow_private=True,
            resolver=f"{host}:{port}",
            source_address=HELPER_ADDRESS,
            ca_bundle=str(lab.ca_pem_path),
        ) as running:
            yield lab, running


async def at_censored(lab: Lab, target: str = "site") -> Measurement:
    data = lab.curfew_config()
    data["probe"] = FAST_PROBE
    data["vantages"] = [v for v in data["vantages"] if v["name"] == CENSORED]
    config = parse_config(data)
    return await measure(config.target(target), vantage_network(config.vantages[0], config), config.probe)


def request_for(m: Measurement) -> THRequest:
    """What a curfew vantage sends: its URL, User-Agent and the endpoints it connected to."""
    endpoints = tuple(f"{o.address}:{o.port}" for o in m.tcp)
    return THRequest(m.url, {"User-Agent": ("curfew-test",)}, endpoints)


async def ask(running: RunningHelper, request: THRequest) -> THResponse:
    resp = await post(running, dumps(request))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return parse_response(resp.content)


def verdict(m: Measurement, answer: THResponse, wiki: Measurement) -> tuple[str, str | None]:
    """The analysis with the helper as the control and the lab's control target at the vantage."""
    a = analyze(m, controls=[wiki], control_vantage=control_measurement(answer, m.url, target=m.target))
    return a.verdict, a.operation


async def test_the_helper_measures_the_site_and_the_probes_addresses(tmp_path: Path) -> None:
    async with lab_and_helper(tmp_path, []) as (lab, running):
        port = lab.target_port("site")
        url = f"https://www.site.lab:{port}/"
        answer = await ask(
            running, THRequest(url, {"User-Agent": ("ua",)}, (f"127.0.3.1:{port}", f"127.0.3.7:{port}"))
        )
    assert answer.dns.failure is None and answer.dns.addrs == ("127.0.3.1",)
    assert answer.tcp_connect[f"127.0.3.1:{port}"].status is True
    assert answer.tcp_connect[f"127.0.3.7:{port}"].failure == "connection_refused_error"
    tls = answer.tls_handshake[f"127.0.3.1:{port}"]
    assert (tls.server_name, tls.status, tls.failure) == ("www.site.lab", True, None)
    both = FLAG_RESOLVED_BY_PROBE | FLAG_RESOLVED_BY_TH | FLAG_VALID_FOR_DOMAIN | FLAG_BOGON
    assert answer.ip_info["127.0.3.1"].flags == both  # loopback is a bogon, measured with --allow-private
    assert answer.ip_info["127.0.3.7"].flags == FLAG_RESOLVED_BY_PROBE | FLAG_BOGON
    assert answer.http_request.status_code == 200 and answer.http_request.title == "The Site"
    assert answer.http_request.body_length > 0 and answer.http_request.failure is None
    assert answer.http3_request is None and answer.quic_handshake == {}


async def test_tcp_blocked_at_the_vantage_against_the_helper(tmp_path: Path) -> None:
    async with lab_and_helper(tmp_path, [rule("tcp_reset")]) as (lab, running):
        m, wiki = await at_censored(lab), await at_censored(lab, "wiki")
        answer = await ask(running, request_for(m))
    assert verdict(m, answer, wiki) == ("tcp_blocked", "tcp_connect")


async def test_tls_blocked_at_the_vantage_against_the_helper(tmp_path: Path) -> None:
    async with lab_and_helper(tmp_path, [rule("tls_reset")]) as (lab, running):
        m, wiki = await at_censored(lab), await at_censored(lab, "wiki")
        answer = await ask(running, request_for(m))
    assert verdict(m, answer, wiki) == ("tls_blocked", "tls_handshake")


async def test_dns_rewrite_seen_by_the_helper_on_the_probes_address(tmp_path: Path) -> None:
    async with lab_and_helper(tmp_path, [rule("dns_bogus")]) as (lab, running):
        m, wiki = await at_censored(lab), await at_censored(lab, "wiki")
        assert m.dns is not None and m.dns.answers == ("127.0.0.1",)
        answer = await ask(running, request_for(m))
        port = lab.target_port("site")
    assert answer.ip_info["127.0.0.1"].flags & FLAG_RESOLVED_BY_PROBE
    assert not answer.ip_info["127.0.0.1"].flags & FLAG_RESOLVED_BY_TH
    assert answer.tcp_connect[f"127.0.0.1:{port}"].status is False  # nothing serves the site there
    assert answer.dns.addrs == ("127.0.3.1",)
    assert verdict(m, answer, wiki)[0] == "dns_blocked"


async def test_the_site_ok_everywhere_is_ok(tmp_path: Path) -> None:
    async with lab_and_helper(tmp_path, []) as (lab, running):
        m, wiki = await at_censored(lab), await at_censored(lab, "wiki")
        answer = await ask(running, request_for(m))
    assert verdict(m, answer, wiki) == ("ok", None)


MAPS = ("tcp_connect", "tls_handshake", "quic_handshake", "ip_info", "headers")
"""Objects keyed by data (endpoints, IPs, header names), not by field names."""


def shape(value: object, key: str = "") -> object:
    """The JSON's skeleton: field names and value types, each map reduced to one entry."""
    if isinstance(value, dict):
        if key in MAPS:
            return {"*": shape(next(iter(value.values()))) if value else None}
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


async def test_the_helpers_answer_has_exactly_oohelperds_shape(tmp_path: Path) -> None:
    import json

    golden = json.loads((Path(__file__).parent / "golden" / "response_oohelperd.json").read_text())
    async with lab_and_helper(tmp_path, []) as (lab, running):
        port = lab.target_port("site")
        resp = await post(
            running, dumps(THRequest(f"https://www.site.lab:{port}/", {}, (f"127.0.3.1:{port}",)))
        )
    ours = json.loads(resp.content)
    assert list(ours) == list(golden)  # the same fields, in Go's declaration order
    assert shape(ours) == shape(golden)
    assert resp.content == dumps(parse_response(resp.content))  # and byte for byte what Go would write
