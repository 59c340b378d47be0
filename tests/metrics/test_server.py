"""The /metrics endpoint on loopback: what a scraper (and promtool) gets."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from probe.metrics import Metrics, MetricsServer, serve_metrics
from probe.metrics import server as server_module
from tests.metrics.builders import VANTAGE, result, throughput

Response = tuple[int, dict[str, str], bytes]


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(CollectorRegistry())
    m.set_pairs([(VANTAGE, "facebook"), (VANTAGE, "wikipedia"), ("kz-beeline", "telegram")])
    m.observe(result("facebook", "tls_blocked", tls_failure="connection_reset"))
    m.observe(result("wikipedia", "ok", throughput_obs=throughput(8e6)))
    m.observe(result("telegram", "dns_blocked", vantage="kz-beeline", dns_failure="unknown_failure: x"))
    m.observe_scheduler_lag(0.2)
    m.set_spool_source(lambda: 3)
    m.set_write_errors_source(lambda: 1)
    return m


@pytest.fixture
async def server(metrics: Metrics) -> AsyncIterator[MetricsServer]:
    srv = await serve_metrics(metrics, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.close()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str, **headers: str
) -> Response:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if method == "HEAD":
        body = b""
    elif fields.get("transfer-encoding") == "chunked":
        body = await read_chunked(reader)
    else:
        body = await reader.readexactly(int(fields["content-length"]))
    return status, fields, body


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
        parts.append(await reader.readexactly(size))
        assert await reader.readexactly(2) == b"\r\n"
    assert await reader.readexactly(2) == b"\r\n"  # no trailers
    return b"".join(parts)


async def fetch(server: MetricsServer, path: str, method: str = "GET", **headers: str) -> Response:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        return await exchange(reader, writer, method, path, **headers)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_metrics_are_served_in_text_format_0_0_4(server: MetricsServer) -> None:
    status, headers, body = await fetch(server, "/metrics")

    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert {
        "curfew_build_info",
        "curfew_probe_runs",
        "curfew_probe_failures",
        "curfew_probe_success",
        "curfew_probe_verdict",
        "curfew_probe_phase_duration_seconds",
        "curfew_probe_throughput_bytes_per_second",
        "curfew_last_probe_timestamp_seconds",
        "curfew_scheduler_lag_seconds",
        "curfew_spooled_measurements",
        "curfew_store_write_errors",
    } <= set(families)
    failures = {(s.labels["target"], s.labels["failure"]) for s in families["curfew_probe_failures"].samples}
    assert failures == {("facebook", "connection_reset"), ("telegram", "unknown_failure")}


async def test_openmetrics_when_the_scraper_asks_for_it(server: MetricsServer) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    status, headers, body = await fetch(server, "/metrics", Accept=accept)

    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in parse_openmetrics(body.decode())}  # strict: raises on any error
    assert families["curfew_build"].type == "info"
    assert families["curfew_probe_runs"].type == "counter"


async def test_gzip_when_accepted(server: MetricsServer) -> None:
    _, plain_headers, plain = await fetch(server, "/metrics")
    status, headers, body = await fetch(server, "/metrics", Accept_Encoding="gzip")

    assert status == 200 and headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain_headers
    assert gzip.decompress(body) == plain


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_a_large_exposition_is_streamed_in_chunks(
    server: MetricsServer, metrics: Metrics, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    # A batch far below the body's size: the server must send it in pieces as it is rendered.
    monkeypatch.setattr(server_module, "SEND_BATCH", 2048)
    expected = generate_latest(metrics.registry)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        status, headers, body = await exchange(reader, writer, "GET", "/metrics", Accept_Encoding=encoding)
        # The connection is still usable after a chunked response.
        assert (await exchange(reader, writer, "GET", "/healthz"))[2] == b"ok\n"
    finally:
        writer.close()
        await writer.wait_closed()

    assert status == 200 and headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    if encoding == "gzip":
        assert headers["content-encoding"] == "gzip"
        body = gzip.decompress(body)
    assert body == expected


async def test_a_large_exposition_to_an_http_1_0_client_ends_with_the_connection(
    server: MetricsServer, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SEND_BATCH", 2048)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
    response = await reader.read()
    writer.close()

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Transfer-Encoding" not in head
    assert body == generate_latest(metrics.registry)


class BrokenCollector:
    """Another collector on the registry, with a bug: the exposition fails after ours is written."""

    def collect(self) -> list[object]:
        raise RuntimeError("bug")


async def test_a_render_that_fails_before_anything_is_sent_gets_500(
    server: MetricsServer, metrics: Metrics
) -> None:
    broken = BrokenCollector()
    metrics.registry.register(broken)  # type: ignore[arg-type]

    assert (await fetch(server, "/metrics"))[0] == 500

    metrics.registry.unregister(broken)  # type: ignore[arg-type]
    assert (await fetch(server, "/metrics"))[0] == 200


async def test_a_render_that_fails_mid_stream_cuts_the_body_short(
    server: MetricsServer, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "SEND_BATCH", 2048)
    metrics.registry.register(BrokenCollector())  # type: ignore[arg-type]

    # No terminating zero-length chunk: the scraper sees a failed scrape, not a short one.
    with pytest.raises(asyncio.IncompleteReadError):
        await fetch(server, "/metrics")


async def test_index_health_and_errors(server: MetricsServer) -> None:
    status, headers, body = await fetch(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b'href="/metrics"' in body
    assert (await fetch(server, "/healthz"))[:3:2] == (200, b"ok\n")
    assert (await fetch(server, "/nope"))[0] == 404
    status, headers, _ = await fetch(server, "/metrics", method="DELETE")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body = await fetch(server, "/metrics?debug=1", method="HEAD")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


async def test_a_connection_is_kept_alive_between_scrapes(server: MetricsServer, metrics: Metrics) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        _, _, first = await exchange(reader, writer, "GET", "/metrics")
        metrics.set_pairs([(VANTAGE, "facebook")])
        _, _, second = await exchange(reader, writer, "GET", "/metrics")
    finally:
        writer.close()
        await writer.wait_closed()
    assert b'target="wikipedia"' in first and b'target="wikipedia"' not in second


async def test_a_garbled_request_gets_400(server: MetricsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"hello\r\n\r\n")
    head = await reader.read()
    writer.close()
    assert head.startswith(b"HTTP/1.1 400 ")


async def test_close_drops_idle_connections(metrics: Metrics) -> None:
    srv = await serve_metrics(metrics, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    await exchange(reader, writer, "GET", "/healthz")

    await asyncio.wait_for(srv.close(), 5)

    assert await reader.read() == b""
    writer.close()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
async def test_promtool_accepts_the_exposition(server: MetricsServer) -> None:
    _, _, body = await fetch(server, "/metrics")
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
