"""The lab DNS server: authoritative answers, geo answers, and each DNS censorship action."""

from __future__ import annotations

import dns.exception
import dns.rcode
import pytest

from probe.lab import Lab
from tests.lab.conftest import CENSORED, CONTROL, CUTOFF, NEIGHBOUR, query


def addresses(response: object) -> list[str]:
    return [item.address for rrset in response.answer for item in rrset]  # type: ignore[attr-defined]


async def test_a_record_for_a_target(lab: Lab) -> None:
    response = await query(lab, "open.lab", CONTROL)
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response) == ["127.0.3.1"]


async def test_geo_dns_answers_differently_per_vantage(lab: Lab) -> None:
    assert addresses(await query(lab, "open.lab", NEIGHBOUR)) == ["127.0.3.21"]
    assert addresses(await query(lab, "OPEN.lab.", CENSORED)) == ["127.0.3.1"]


async def test_aaaa_is_noerror_without_answer(lab: Lab) -> None:
    response = await query(lab, "open.lab", CONTROL, "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []


async def test_unknown_name_is_nxdomain(lab: Lab) -> None:
    assert (await query(lab, "nowhere.lab", CONTROL)).rcode() == dns.rcode.NXDOMAIN


async def test_tcp_transport(lab: Lab) -> None:
    assert addresses(await query(lab, "open.lab", CONTROL, tcp=True)) == ["127.0.3.1"]


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("nx.lab", dns.rcode.NXDOMAIN),
        ("servfail.lab", dns.rcode.SERVFAIL),
        ("refused.lab", dns.rcode.REFUSED),
    ],
)
async def test_dns_error_actions(lab: Lab, name: str, rcode: dns.rcode.Rcode) -> None:
    assert (await query(lab, name, CENSORED)).rcode() == rcode
    assert addresses(await query(lab, name, CONTROL)) == ["127.0.3.15"]


async def test_dns_bogus(lab: Lab) -> None:
    assert addresses(await query(lab, "bogus.lab", CENSORED)) == ["127.0.0.1"]


async def test_dns_timeout(lab: Lab) -> None:
    with pytest.raises(dns.exception.Timeout):
        await query(lab, "timeout.lab", CENSORED)
    assert addresses(await query(lab, "timeout.lab", CONTROL)) == ["127.0.3.15"]


async def test_blackhole_gets_no_reply(lab: Lab) -> None:
    with pytest.raises(dns.exception.Timeout):
        await query(lab, "open.lab", CUTOFF)


async def test_garbage_is_ignored(lab: Lab) -> None:
    import asyncio

    host, port = lab.dns_address
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=(host, port))
    transport.sendto(b"\x00not dns")
    transport.close()
    assert addresses(await query(lab, "open.lab", CONTROL)) == ["127.0.3.1"]
