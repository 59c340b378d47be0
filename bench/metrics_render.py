"""Time to render /metrics for 10,000 (vantage, target) pairs.

    .venv/bin/python bench/metrics_render.py [--vantages 100] [--targets 100] [--renders 20]

Every pair gets one observed result first: most ok with all five phases timed, some blocked
(a failure counted), some with a bulk-download rate. Then, each over --renders scrapes:

- chunks, unchanged: `Metrics.render_chunks()` (what GET /metrics runs; the server streams
  the list) when no pair changed since the last scrape: every pair's text comes from cache;
- chunks, 5% changed: as above after 5% of the pairs got a new result before each scrape
  (one probe per pair every 300 s, scraped every 15 s);
- chunks, all changed: every pair got a new result before each scrape (the worst case);
- bytes, unchanged: `Metrics.render()`, the same joined into one bytes (one copy of the body);
- generate_latest: prometheus_client's generic path on the same registry (fresh metric
  families and a formatted line per sample), byte-identical output; fewer runs, it is slow;
- HTTP scrape: GET /metrics over loopback with Accept-Encoding: gzip, as Prometheus sends it
  (render, gzip level 1, transfer), and without gzip.

Prints median and p99 (the maximum, with ~20 runs) per case, the ratio to the 50 ms target,
the body size and the cost of one observe().
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import generate_latest

from probe.analysis.verdict import Analysis
from probe.metrics import Metrics, serve_metrics
from probe.model import (
    DnsObservation,
    HttpObservation,
    Measurement,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
    Verdict,
)
from probe.round import Result

TARGET_MS = 50.0


def make_result(rng: random.Random, vantage: str, target: str) -> Result:
    """A probe of (vantage, target): usually ok, sometimes TLS-reset, sometimes with a bulk download."""
    d = [rng.lognormvariate(-3.0, 1.0) for _ in range(5)]
    t1, t2, t3 = d[0], d[0] + d[1], d[0] + d[1] + d[2]
    dns = DnsObservation("www.example.org", "192.0.2.53", "udp", 0.0, t1, ("192.0.2.10",))
    tcp = (TcpObservation("192.0.2.10", 443, t1, t2),)
    started = datetime(2019, 6, 9, 5, 0, tzinfo=UTC)
    if rng.random() < 0.1:
        tls = (TlsObservation("192.0.2.10", 443, "www.example.org", t2, t2 + 5, failure="connection_reset"),)
        m = Measurement(vantage, target, "https://www.example.org/", started, 5.0, dns=dns, tcp=tcp, tls=tls)
        return Result(m, Analysis("tls_blocked", "tls_handshake", "connection_reset", "bench"))
    tls = (TlsObservation("192.0.2.10", 443, "www.example.org", t2, t3, version="TLSv1.3", valid=True),)
    http = HttpObservation(
        "https://www.example.org/", "192.0.2.10", t3, t3 + d[3] + d[4], status=200, ttfb=d[3]
    )
    bulk = None
    verdict: Verdict = "ok"
    if rng.random() < 0.2:
        bulk = ThroughputObservation("https://www.example.org/bulk", 1.0, 3.0, bytes=2_000_000,
                                     samples=((0.1, 1000), (2.0, 2_000_000)), complete=True)  # fmt: skip
    m = Measurement(vantage, target, "https://www.example.org/", started, 1.0, dns=dns, tcp=tcp, tls=tls,
                    http=http, throughput=bulk)  # fmt: skip
    return Result(m, Analysis(verdict, None, None, "bench"))


def timed(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> list[float]:
    out = []
    for _ in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    median = statistics.median(ms)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    print(f"{name:<26} median {median:8.1f} ms   p99 {p99:8.1f} ms   median/target {median / TARGET_MS:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vantages", type=int, default=100)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--generic-renders", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(2019)
    pairs = [
        (f"vantage-{v:03d}", f"target-{t:03d}") for v in range(args.vantages) for t in range(args.targets)
    ]
    metrics = Metrics()
    metrics.set_pairs(pairs)
    metrics.set_spool_source(lambda: 0)
    metrics.set_write_errors_source(lambda: 0)
    results = [make_result(rng, v, t) for v, t in pairs]
    t0 = time.perf_counter()
    for r in results:
        metrics.observe(r)
    observe_us = (time.perf_counter() - t0) / len(results) * 1e6
    for _ in range(200):
        metrics.observe_scheduler_lag(rng.expovariate(10))

    first = timed(metrics.render, 1)[0]  # builds every pair's text once
    body, _ = metrics.render()
    assert body == generate_latest(metrics.registry), "fast text differs from prometheus_client's"
    lines = body.count(b"\n") - body.count(b"\n#")
    t0 = time.perf_counter()
    gz = gzip.compress(body, compresslevel=1)
    gzip_ms = (time.perf_counter() - t0) * 1000

    def change(fraction: float) -> Callable[[], None]:
        def before() -> None:
            for r in rng.sample(results, int(len(results) * fraction)):
                metrics.observe(r)

        return before

    print(f"{len(pairs):,} pairs, {lines:,} samples, {len(body) / 1e6:.1f} MB text "
          f"({len(gz) / 1e6:.1f} MB gzip level 1, {gzip_ms:.0f} ms)")  # fmt: skip
    print(
        f"observe(): {observe_us:.1f} us per result; first render (every pair's text built): {first:.0f} ms"
    )
    report("chunks, unchanged", timed(metrics.render_chunks, args.renders))
    report("chunks, 5% changed", timed(metrics.render_chunks, args.renders, change(0.05)))
    report("chunks, all changed", timed(metrics.render_chunks, args.renders, change(1.0)))
    report("bytes, unchanged", timed(metrics.render, args.renders))
    generic = timed(lambda: generate_latest(metrics.registry), args.generic_renders)
    report("generate_latest (generic)", generic)
    gz_ms, plain_ms = asyncio.run(scrapes(metrics, max(3, args.renders // 4)))
    report("HTTP scrape, gzip", gz_ms)
    report("HTTP scrape, plain", plain_ms)


async def scrapes(metrics: Metrics, runs: int) -> tuple[list[float], list[float]]:
    server = await serve_metrics(metrics, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=1 << 20)

    async def get(encoding: str) -> float:
        t0 = time.perf_counter()
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {encoding}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        return (time.perf_counter() - t0) * 1000

    try:
        gz = [await get("gzip") for _ in range(runs)]
        plain = [await get("identity") for _ in range(runs)]
    finally:
        writer.close()
        await server.close()
    return gz, plain


if __name__ == "__main__":
    main()
