"""A lab with one target per censorship technique, and plain clients to look at it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import pytest

from probe.lab import Lab, Scenario, parse_scenario

CENSORED = "127.0.0.2"
NEIGHBOUR = "127.0.0.3"  # another censored vantage; gets a geo answer for "open"
CUTOFF = "127.0.0.4"  # blackholed
CONTROL = "127.0.0.9"
JAN_2019 = dt.datetime(2019, 1, 15, 9, 0, tzinfo=dt.UTC)


def https(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "hosts": [f"{name}.lab"],
        "address": address,
        "port": 0,
        "title": name.title(),
        **extra,
    }


def http(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return https(name, address, scheme="http", bulk=False, **extra)


def only(action: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "vantages": ["censored"], "targets": [target], **extra}


TECHNIQUES: dict[str, Any] = {
    "name": "techniques",
    "timezone": "Asia/Almaty",
    "dns": {"listen": "127.0.0.1:0"},
    "vantages": [
        {"name": "censored", "address": CENSORED},
        {"name": "neighbour", "address": NEIGHBOUR},
        {"name": "cutoff", "address": CUTOFF},
        {"name": "control", "address": CONTROL, "control": True},
    ],
    "targets": [
        https("open", "127.0.3.1", geo={"neighbour": "127.0.3.21"}),
        https("reset", "127.0.3.2"),
        https("tlsreset", "127.0.3.3"),
        https("silence", "127.0.3.4"),
        https("mitm", "127.0.3.5"),
        https("slow", "127.0.3.6"),
        https("drop", "127.0.3.7"),
        https("down", "127.0.3.8", down=True),
        https("wiki", "127.0.3.10", control=True),
        https("evening", "127.0.3.11"),
        https("may9", "127.0.3.16"),
        http("news", "127.0.3.12"),
        http("redirected", "127.0.3.13"),
        http("warning", "127.0.3.14", probe=False),
        {
            "name": "dnsvictim",
            "hosts": ["nx.lab", "servfail.lab", "refused.lab", "bogus.lab", "timeout.lab"],
            "address": "127.0.3.15",
            "port": 0,
        },
    ],
    "rules": [
        {"action": "blackhole", "vantages": ["cutoff"]},
        only("tcp_reset", "reset"),
        only("tls_reset", "tlsreset"),
        only("tls_silence", "silence"),
        only("tls_mitm", "mitm"),
        only("throttle", "slow", rate_bps=150_000),
        only("tcp_drop", "drop"),
        only("http_blockpage", "news"),
        only("http_redirect", "redirected"),
        only("tls_reset", "evening", when={"daily": "20:00-22:00"}),
        only("tcp_drop", "may9", when={"from": "2019-05-09T13:00", "until": "2019-05-09T20:00"}),
        {"action": "dns_nxdomain", "vantages": ["censored"], "names": ["nx.lab"]},
        {"action": "dns_servfail", "vantages": ["censored"], "names": ["servfail.lab"]},
        {"action": "dns_refused", "vantages": ["censored"], "names": ["refused.lab"]},
        {"action": "dns_bogus", "vantages": ["censored"], "names": ["bogus.lab"], "address": "127.0.0.1"},
        {"action": "dns_timeout", "vantages": ["censored"], "names": ["timeout.lab"]},
    ],
}


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(TECHNIQUES)


@pytest.fixture
async def lab(scenario: Scenario, tmp_path: Path) -> AsyncIterator[Lab]:
    async with Lab(scenario, state_dir=tmp_path / "lab", clock=lambda: JAN_2019) as running:
        yield running


def lab_context(lab: Lab) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(lab.ca_pem_path))


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def connect(
    lab: Lab,
    target: str,
    source: str,
    *,
    context: ssl.SSLContext | None = None,
    tls: bool = True,
    address: str | None = None,
    timeout: float = 10.0,  # for a connection that should work; blocked ones pass their own
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    spec = lab.scenario.target(target)
    use_tls = tls and spec.scheme == "https"
    return await asyncio.wait_for(
        asyncio.open_connection(
            address or spec.address,
            lab.target_port(target),
            ssl=(context or lab_context(lab)) if use_tls else None,
            server_hostname=spec.hosts[0] if use_tls else None,
            local_addr=(source, 0),
        ),
        timeout,
    )


async def get(
    lab: Lab, target: str, source: str, path: str = "/", *, timeout: float = 15.0, **options: Any
) -> bytes:
    """GET `path` from the target through the censor front; the raw response bytes."""
    reader, writer = await connect(lab, target, source, **options)
    try:
        host = lab.scenario.target(target).hosts[0]
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def query(
    lab: Lab, name: str, source: str, rdtype: str = "A", tcp: bool = False
) -> dns.message.Message:
    host, port = lab.dns_address
    message = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(message, host, port=port, source=source, timeout=1.0)
    return await dns.asyncquery.udp(message, host, port=port, source=source, timeout=1.0)
