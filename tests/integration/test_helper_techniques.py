"""One test per technique with the control coming only from a test helper: the lab runs
`curfew helper` on the control vantage's address, the curfew config has no control vantage,
only `helpers:`, and the real probe's verdicts are judged against the helper's answers.

One lab and one round for the module (every technique on its own target), over real sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from sqlalchemy import text

from probe.commands.analyze import rebuild
from probe.config import parse_config
from probe.lab.lab import Lab
from probe.lab.scenario import parse_scenario
from probe.model import Result
from probe.round import run_round
from probe.store import Store
from probe.store.engine import create_engine
from probe.store.mapping import result_row
from tests.integration.conftest import CENSORED, FAST_PROBE, summary

pytestmark = pytest.mark.asyncio(loop_scope="module")

CUT = "cut"  # a vantage cut off entirely
HELPER_AT = "127.0.0.9"


def site(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "hosts": [f"{name}.lab"], "address": address, "port": 0, "bulk": False, **extra}


def only(action: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "vantages": [CENSORED], "targets": [target], **extra}


SCENARIO: dict[str, Any] = {
    "name": "helper-techniques",
    "timezone": "UTC",
    "dns": {"listen": "127.0.0.1:0"},
    "vantages": [
        {"name": CENSORED, "address": "127.0.0.2"},
        {"name": CUT, "address": "127.0.0.4"},
        {"name": "control", "address": HELPER_AT, "control": True, "helper": True, "helper_port": 0},
    ],
    "targets": [
        site("wiki", "127.0.3.10", control=True, bulk=True, bulk_bytes=1 << 20),
        site("nx", "127.0.3.1"),
        site("dropped", "127.0.3.2"),
        site("reset", "127.0.3.3"),
        site("mitm", "127.0.3.4"),
        site("news", "127.0.3.5", scheme="http"),
        site("slow", "127.0.3.6", bulk=True, bulk_bytes=1 << 20),
        site("gone", "127.0.3.7", down=True),
        site("cdn", "127.0.3.8", geo={CENSORED: "127.0.3.18"}),
        site("cdndropped", "127.0.3.9", geo={CENSORED: "127.0.3.19"}),
        site("cdnreset", "127.0.3.11", geo={CENSORED: "127.0.3.21"}),
    ],
    "rules": [
        {"action": "blackhole", "vantages": [CUT]},
        {"action": "dns_nxdomain", "vantages": [CENSORED], "names": ["nx.lab"]},
        only("tcp_drop", "dropped"),
        only("tls_reset", "reset"),
        only("tls_mitm", "mitm"),
        only("http_blockpage", "news"),
        only("throttle", "slow", rate_bps=150_000),
        only("tcp_drop", "cdndropped"),
        only("tls_reset", "cdnreset"),
    ],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def results(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[tuple[str, str], Result]]:
    state = tmp_path_factory.mktemp("helper-lab")
    async with Lab(parse_scenario(SCENARIO), state, helper_probe=FAST_PROBE) as lab:
        data = lab.curfew_config()
        data["probe"] = {**FAST_PROBE, "timeouts": {**FAST_PROBE["timeouts"], "helper": 15.0}}
        config = parse_config(data)
        assert not any(v.control for v in config.vantages)
        assert [h.url for h in config.helpers] == lab.helper_urls
        judged = await run_round(config)
        yield {(r.measurement.vantage, r.measurement.target): r for r in judged}


def at_censored(results: dict[tuple[str, str], Result], target: str) -> Result:
    result = results[(CENSORED, target)]
    control = orjson.loads(result_row(result)["observations"])
    # The verdict was judged against the helper's answer, and the answer is kept with it.
    assert control["x_control"]["source"].startswith(f"helper:http://{HELPER_AT}:"), control[
        "control_failure"
    ]
    assert control["control"] is not None and control["control_failure"] is None
    return result


def check(
    results: dict[tuple[str, str], Result], target: str, expected: tuple[str, str | None, str | None]
) -> None:
    result = at_censored(results, target)
    assert summary(result) == expected, result.analysis.reason


async def test_helper_dns_nxdomain(results: dict[tuple[str, str], Result]) -> None:
    check(results, "nx", ("dns_blocked", "dns", "dns_nxdomain_error"))


async def test_helper_tcp_syn_drop(results: dict[tuple[str, str], Result]) -> None:
    check(results, "dropped", ("tcp_blocked", "tcp_connect", "generic_timeout_error"))


async def test_helper_tls_reset(results: dict[tuple[str, str], Result]) -> None:
    check(results, "reset", ("tls_blocked", "tls_handshake", "connection_reset"))


async def test_helper_tls_mitm(results: dict[tuple[str, str], Result]) -> None:
    check(results, "mitm", ("tls_mitm", "tls_handshake", "ssl_unknown_authority"))
    assert "the control got a valid chain" in results[(CENSORED, "mitm")].analysis.reason


async def test_helper_http_blockpage(results: dict[tuple[str, str], Result]) -> None:
    check(results, "news", ("http_blocked", "http_request", None))


async def test_helper_throttling(results: dict[tuple[str, str], Result]) -> None:
    check(results, "slow", ("throttled", "throughput", None))


async def test_helper_vantage_down(results: dict[tuple[str, str], Result]) -> None:
    for target in ("nx", "reset", "wiki", "cdn"):
        assert results[(CUT, target)].analysis.verdict == "vantage_down", target


async def test_helper_target_down(results: dict[tuple[str, str], Result]) -> None:
    check(results, "gone", ("target_down", "tcp_connect", "connection_refused"))


async def test_helper_geo_dns_valid(results: dict[tuple[str, str], Result]) -> None:
    check(results, "cdn", ("ok", None, None))
    assert results[(CENSORED, "cdn")].analysis.dns_consistency == "consistent"


async def test_helper_geo_dns_then_syn_dropped(results: dict[tuple[str, str], Result]) -> None:
    check(results, "cdndropped", ("tcp_blocked", "tcp_connect", "generic_timeout_error"))


async def test_helper_geo_dns_then_tls_reset(results: dict[tuple[str, str], Result]) -> None:
    check(results, "cdnreset", ("tls_blocked", "tls_handshake", "connection_reset"))


async def test_helper_control_targets_need_no_helper(results: dict[tuple[str, str], Result]) -> None:
    wiki = results[(CENSORED, "wiki")]
    assert summary(wiki) == ("ok", None, None)
    assert orjson.loads(result_row(wiki)["observations"])["x_control"]["source"] is None


async def test_helper_verdicts_are_judged_again_from_the_database(
    results: dict[tuple[str, str], Result], tmp_path: Path
) -> None:
    # Stored, then the verdicts of the censored vantage overwritten as by an older analysis:
    # `analyze --rebuild --rejudge` gets them back from the observations and the kept answers.
    database = f"sqlite:///{tmp_path / 'curfew.db'}"
    store = await Store.open(database, tmp_path / "spool")
    for result in results.values():
        store.submit(result)
    await store.close()
    engine = create_engine(database)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE measurements SET verdict = 'ok', analysis = '{}' WHERE vantage = :v"),
            {"v": CENSORED},
        )
    await engine.dispose()
    config = parse_config(
        {
            "database": database,
            "vantages": [{"name": CENSORED}],
            "targets": [{"name": "nx", "url": "https://nx.lab/"}],
        }
    )
    rejudged: list[tuple[int, int]] = []
    await rebuild(config, rejudged)
    assert rejudged == [(len(results), sum(1 for v, _ in results if v == CENSORED))]
    engine = create_engine(database)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT vantage, target, verdict FROM measurements"))).all()
    await engine.dispose()
    assert {(v, t): verdict for v, t, verdict in rows} == {k: r.analysis.verdict for k, r in results.items()}
