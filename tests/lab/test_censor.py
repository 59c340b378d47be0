"""Each censorship technique as a plain client at a vantage sees it; control sees the site."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from probe.lab import BLOCKPAGE_FINGERPRINT, Lab, Scenario, bpf
from tests.lab.conftest import (
    CENSORED,
    CONTROL,
    CUTOFF,
    JAN_2019,
    NEIGHBOUR,
    connect,
    get,
    unverified_context,
)


def title_of(response: bytes) -> str:
    return response.split(b"<title>", 1)[1].split(b"</title>", 1)[0].decode()


async def test_pass_serves_the_page_with_a_valid_chain(lab: Lab) -> None:
    response = await get(lab, "open", CENSORED)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nX-Lab-Origin: open\r\n" in response
    assert title_of(response) == "Open"


async def test_geo_address_serves_the_same_site(lab: Lab) -> None:
    response = await get(lab, "open", NEIGHBOUR, address="127.0.3.21")
    assert title_of(response) == "Open"


async def test_tcp_reset(lab: Lab) -> None:
    reader, writer = await connect(lab, "reset", CENSORED, tls=False)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(), 2)
    writer.close()
    assert title_of(await get(lab, "reset", CONTROL)) == "Reset"


async def test_tls_reset_after_client_hello(lab: Lab) -> None:
    with pytest.raises(ConnectionResetError):
        await connect(lab, "tlsreset", CENSORED)
    # The TCP connection itself is accepted; only the ClientHello triggers the reset.
    _, writer = await connect(lab, "tlsreset", CENSORED, tls=False)
    writer.close()
    assert title_of(await get(lab, "tlsreset", CONTROL)) == "Tlsreset"


async def test_tls_silence_times_out(lab: Lab) -> None:
    with pytest.raises(TimeoutError):
        await connect(lab, "silence", CENSORED, timeout=0.7)
    assert title_of(await get(lab, "silence", CONTROL)) == "Silence"


async def test_tls_mitm_presents_the_qaznet_chain(lab: Lab) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(lab, "mitm", CENSORED)
    _, writer = await connect(lab, "mitm", CENSORED, context=unverified_context())
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    leaf = x509.load_der_x509_certificate(der)
    issuer = {a.oid: a.value for a in leaf.issuer}
    assert issuer == {NameOID.COUNTRY_NAME: "KZ", NameOID.COMMON_NAME: "Security Certificate"}
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mitm.lab"
    # The interception is transparent: HTTP works through it.
    response = await get(lab, "mitm", CENSORED, context=unverified_context())
    assert title_of(response) == "Mitm"


async def test_throttle_polices_the_download_to_the_rate(lab: Lab) -> None:
    reader, writer = await connect(lab, "slow", CENSORED)
    writer.write(b"GET /bulk HTTP/1.1\r\nHost: slow.lab\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    start, received = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < 2.0:
        received += len(await reader.read(65536))
    writer.close()
    # Policed to about the rate: within half of it either way, which a loaded machine's late
    # reads do not break, while an unpoliced loopback download runs hundreds of times faster.
    assert 150_000 * 0.5 < received * 8 / elapsed < 150_000 * 1.5


async def test_throttle_spares_the_control_vantage(lab: Lab) -> None:
    started = time.monotonic()
    response = await get(lab, "slow", CONTROL, "/bulk")
    assert len(response.partition(b"\r\n\r\n")[2]) == 4 * 1024 * 1024
    assert time.monotonic() - started < 30  # policed to 150 kbit/s it would take 220 s


async def test_tcp_drop_times_out_the_connect_in_the_kernel(lab: Lab) -> None:
    assert lab.filters_work()
    with pytest.raises(TimeoutError):
        await connect(lab, "drop", CENSORED, tls=False, timeout=0.7)
    assert title_of(await get(lab, "drop", CONTROL)) == "Drop"


def test_bpf_filter_drops_syn_on_loopback() -> None:
    """The kernel, not the lab, drops the SYN: no accept() ever runs in this test."""
    attach_drop_filter = bpf.attach_drop_filter
    with socket.create_server(("127.0.3.99", 0)) as listener:
        port = listener.getsockname()[1]
        attach_drop_filter(listener, [CENSORED])
        with socket.socket() as blocked, socket.socket() as other:
            blocked.bind((CENSORED, 0))
            blocked.settimeout(0.5)
            with pytest.raises(TimeoutError):
                blocked.connect(("127.0.3.99", port))
            other.bind((CONTROL, 0))
            other.settimeout(10)
            other.connect(("127.0.3.99", port))
        attach_drop_filter(listener, [])  # removing the filter lets the vantage in again
        with socket.create_connection(("127.0.3.99", port), 10, source_address=(CENSORED, 0)):
            pass


async def test_http_blockpage(lab: Lab) -> None:
    response = await get(lab, "news", CENSORED)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert BLOCKPAGE_FINGERPRINT.encode() in response
    assert title_of(await get(lab, "news", CONTROL)) == "News"


async def test_http_redirect_to_the_warning_site(lab: Lab) -> None:
    response = await get(lab, "redirected", CENSORED)
    assert response.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"\r\nLocation: http://warning.lab/\r\n" in response
    assert title_of(await get(lab, "warning", CENSORED)) == "Warning"


async def test_target_down_refuses_everyone(lab: Lab) -> None:
    for source in (CENSORED, CONTROL):
        with pytest.raises(ConnectionRefusedError):
            await connect(lab, "down", source)


async def test_blackhole_cuts_the_vantage_off_from_everything(lab: Lab) -> None:
    for target in ("open", "wiki"):
        with pytest.raises(TimeoutError):
            await connect(lab, target, CUTOFF, tls=False, timeout=0.5)
    assert title_of(await get(lab, "wiki", CENSORED)) == "Wiki"


async def test_rules_follow_the_virtual_clock(lab: Lab) -> None:
    almaty = dt.timezone(dt.timedelta(hours=6))
    lab.set_time(dt.datetime(2019, 3, 20, 21, 0, tzinfo=almaty))
    with pytest.raises(ConnectionResetError):
        await connect(lab, "evening", CENSORED)
    lab.set_time(dt.datetime(2019, 3, 20, 22, 0, tzinfo=almaty))
    assert title_of(await get(lab, "evening", CENSORED)) == "Evening"


async def test_clock_change_reattaches_the_syn_filter(lab: Lab) -> None:
    almaty = dt.timezone(dt.timedelta(hours=6))
    lab.set_time(dt.datetime(2019, 5, 9, 12, 59, tzinfo=almaty))
    assert title_of(await get(lab, "may9", CENSORED)) == "May9"
    lab.set_time(dt.datetime(2019, 5, 9, 13, 0, tzinfo=almaty))
    with pytest.raises(TimeoutError):
        await connect(lab, "may9", CENSORED, tls=False, timeout=0.5)
    lab.clear_time()  # back to the fixture's clock, January 2019: the filter comes off
    assert title_of(await get(lab, "may9", CENSORED)) == "May9"


async def test_tcp_drop_falls_back_to_silence_without_bpf(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(sock: socket.socket, addresses: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(bpf, "attach_drop_filter", refuse)
    async with Lab(scenario, tmp_path, clock=lambda: JAN_2019) as lab:
        assert not lab.filters_work()
        reader, writer = await connect(lab, "drop", CENSORED, tls=False)  # accepted...
        writer.write(b"\x16\x03\x01")
        with pytest.raises(TimeoutError):  # ...and never answered
            await asyncio.wait_for(reader.read(1), 0.5)
        writer.close()
