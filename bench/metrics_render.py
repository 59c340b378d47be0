"""Time (and memory) to render /metrics for 10,000 series and for 10,000 (vantage, target) pairs.

    .venv/bin/python bench/metrics_render.py [--vantages 100] [--targets 100] [--renders 20]

Every pair gets one observed result first: most ok with all five phases timed, some blocked
(a failure counted), some with a bulk-download rate. Two registries are measured:

- 10,000 series: as many pairs (10 targets per vantage) as it takes to reach 10,000 samples
  (~110 pairs), the issue's target case;
- --vantages x --targets pairs (10,000 by default, ~930,000 samples).

For each, over --renders scrapes (a pair observed since the last scrape costs no more than
one that was not: nothing is cached):

- streamed: `Metrics.render_chunks()` consumed to the end (what GET /metrics runs; the body
  is never whole in memory);
- bytes: `Metrics.render()`, the same joined into one bytes;
- generate_latest: prometheus_client's generic path on the same registry (fresh metric
  families and a formatted line per sample), byte-identical output; fewer runs, it is slow;
- HTTP scrape: GET /metrics over loopback with Accept-Encoding: gzip, as Prometheus sends it
  (render, gzip level 1, chunked transfer), and without gzip.

Prints median and p99 (the maximum, with ~20 runs) per case, the ratio to the 50 ms target,
the body size, the peak RSS added by one streamed and one joined render, and the cost of one
observe().
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

from probe.metrics import Metrics, serve_metrics
from probe.model import (
    Analysis,
    DnsObservation,
    HttpObservation,
    Measurement,
    Result,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
    Verdict,
)

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


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    median = statistics.median(ms)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
    print(
        f"  {name:<24} median {median:8.1f} ms   p99 {p99:8.1f} ms   median/target {median / TARGET_MS:6.2f}"
    )


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_added_mb(fn: Callable[[], object]) -> float:
    """How far RSS rose above where it was while `fn` ran (Linux: clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = rss_mb()
    fn()
    return rss_mb("VmHWM") - before


def stream(metrics: Metrics) -> None:
    for _ in metrics.render_chunks()[0]:
        pass


def build(rng: random.Random, pairs: list[tuple[str, str]]) -> tuple[Metrics, float]:
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
    return metrics, observe_us


def measure(name: str, metrics: Metrics, args: argparse.Namespace, generic_runs: int) -> None:
    body, _ = metrics.render()
    assert body == generate_latest(metrics.registry), "fast text differs from prometheus_client's"
    t0 = time.perf_counter()
    gz = len(gzip.compress(body, compresslevel=1))
    gzip_ms = (time.perf_counter() - t0) * 1000
    print(f"{name}: {len(metrics._pairs):,} pairs, {samples(body):,} samples, {len(body) / 1e6:.2f} MB text "
          f"({gz / 1e6:.2f} MB gzip level 1, {gzip_ms:.0f} ms)")  # fmt: skip
    del body
    report("streamed", timed(lambda: stream(metrics), args.renders))
    report("bytes", timed(metrics.render, args.renders))
    report("generate_latest (generic)", timed(lambda: generate_latest(metrics.registry), generic_runs))
    gz_ms, plain_ms = asyncio.run(scrapes(metrics, max(3, args.renders // 4)))
    report("HTTP scrape, gzip", gz_ms)
    report("HTTP scrape, plain", plain_ms)
    print(f"  peak RSS added: streamed {peak_added_mb(lambda: stream(metrics)):.1f} MB, "
          f"bytes {peak_added_mb(metrics.render):.1f} MB")  # fmt: skip


def samples(body: bytes) -> int:
    return body.count(b"\n") - body.count(b"\n#") - (not body.startswith(b"#"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vantages", type=int, default=100)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--generic-renders", type=int, default=2)
    args = parser.parse_args()

    rng = random.Random(2019)
    # 10,000 series: ~92 samples per observed pair, so add pairs until the exposition has 10,000.
    pairs = [(f"vantage-{n // 10:03d}", f"target-{n % 10:03d}") for n in range(100)]
    small, _ = build(random.Random(2019), pairs)
    per_pair = samples(small.render()[0]) / len(pairs)
    n = int(10_000 / per_pair) + 1
    small, _ = build(rng, [(f"vantage-{i // 10:03d}", f"target-{i % 10:03d}") for i in range(n)])
    measure("10,000 series", small, args, max(args.renders, 5))

    pairs = [
        (f"vantage-{v:03d}", f"target-{t:03d}") for v in range(args.vantages) for t in range(args.targets)
    ]
    before = rss_mb()
    metrics, observe_us = build(rng, pairs)
    state_mb = rss_mb() - before
    print(f"observe(): {observe_us:.1f} us per result; RSS of {len(pairs):,} pairs' metrics (and results): "
          f"{state_mb:.1f} MB")  # fmt: skip
    measure(f"{len(pairs):,} pairs", metrics, args, args.generic_renders)


async def scrapes(metrics: Metrics, runs: int) -> tuple[list[float], list[float]]:
    server = await serve_metrics(metrics, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=1 << 20)

    async def get(encoding: str) -> float:
        t0 = time.perf_counter()
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {encoding}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b"content-length:" in head.lower():
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
        else:  # chunked
            while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
                await reader.readexactly(size + 2)
            await reader.readexactly(2)
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
