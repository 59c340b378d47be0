"""Scheduler lag and memory with 10,000 (vantage, target) pairs.

The daemon's own machinery at scale: APScheduler jobs, the Prober with control sharing,
judging, the metrics snapshot and the store (SQLite), with the network replaced by a fake
that answers after a short delay (the lab cannot serve 10,000 real pairs on two cores, and
what is measured here is the daemon, not the probe: see probe_cpu.py for that).

    .venv/bin/python bench/daemon_scale.py [--vantages 100] [--targets 100] [--interval 60] [--seconds 90]
                                          [--scrape-interval 15]

Prometheus is played too: GET /metrics with Accept-Encoding: gzip on the daemon's metrics
server every --scrape-interval seconds (0: never), so the RSS and lag include scrapes.

Targets: p99 scheduler lag <= 1 s, RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from probe.config import parse_config
from probe.daemon.prober import Prober
from probe.daemon.scheduler import Scheduler, pairs_of
from probe.metrics import Metrics, serve_metrics
from probe.model import DnsObservation, HttpObservation, Measurement, Result, TcpObservation, TlsObservation
from probe.store import Store


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fake_measurement(vantage: str, target: str) -> Measurement:
    host = f"{target}.example"
    return Measurement(
        vantage,
        target,
        f"https://{host}/",
        datetime.now(UTC),
        0.05,
        dns=DnsObservation(host, "r", "udp", 0.0, 0.005, ("192.0.2.1",)),
        tcp=(TcpObservation("192.0.2.1", 443, 0.005, 0.01),),
        tls=(TlsObservation("192.0.2.1", 443, host, 0.01, 0.03, version="TLSv1.3", valid=True),),
        http=HttpObservation(
            f"https://{host}/", "192.0.2.1", 0.03, 0.05, status=200, title=target, body_length=5000
        ),
    )


async def main(args: argparse.Namespace) -> None:
    data = {
        "interval": args.interval,
        "confirm_interval": 30,
        "max_concurrency": 512,
        "vantages": [{"name": f"v{i}"} for i in range(args.vantages - 1)]
        + [{"name": "ctl", "control": True}],
        "targets": [{"name": f"t{i}", "url": f"https://t{i}.example/"} for i in range(args.targets - 2)]
        + [
            {"name": "c1", "url": "https://c1.example/", "control": True},
            {"name": "c2", "url": "https://c2.example/", "control": True},
        ],
    }
    config = parse_config(data)
    pairs = pairs_of(config)
    probes = 0

    async def network(vantage: str, target: str) -> Measurement:
        nonlocal probes
        probes += 1
        await asyncio.sleep(0.05)
        return fake_measurement(vantage, target)

    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(f"sqlite:///{tmp}/bench.db", Path(tmp) / "spool")
        await store.sync_inventory(config)
        metrics = Metrics()
        metrics.set_pairs(pairs)
        lags: list[float] = []
        stored = 0

        def record(results: list[Result]) -> None:
            nonlocal stored
            for result in results:
                store.submit(result)
                metrics.observe(result)
                stored += 1

        def on_lag(lag: float) -> None:
            lags.append(lag)
            metrics.observe_scheduler_lag(lag)

        server = await serve_metrics(metrics, "127.0.0.1", 0)
        rss_start = rss_mb()
        scheduler = Scheduler(Prober(config, measure_fn=network), record, on_lag)
        started = time.monotonic()
        scheduler.start()
        peak = rss_start
        scrapes: list[tuple[float, int]] = []
        next_scrape = started + args.scrape_interval if args.scrape_interval else float("inf")
        while time.monotonic() - started < args.seconds:
            await asyncio.sleep(1)
            peak = max(peak, rss_mb())
            if time.monotonic() >= next_scrape:
                scrape = asyncio.create_task(scrape_metrics(server.port))
                while not scrape.done():  # the peak is during the scrape
                    await asyncio.sleep(0.05)
                    peak = max(peak, rss_mb())
                scrapes.append(scrape.result())
                next_scrape += args.scrape_interval
        await scheduler.drain(5)
        await server.close()
        await store.close()

    lags.sort()
    p50 = statistics.median(lags) if lags else float("nan")
    p99 = lags[int(len(lags) * 0.99) - 1] if lags else float("nan")
    print(f"pairs={len(pairs)} interval={args.interval}s ran={args.seconds}s")
    print(f"runs={len(lags)} probes={probes} stored={stored}")
    worst = lags[-1] * 1000 if lags else 0.0
    print(f"scheduler lag: p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms max={worst:.1f} ms")
    print(f"  target p99 <= 1000 ms: {'met' if p99 <= 1.0 else 'NOT met'} (ratio {p99 / 1.0:.3f})")
    if scrapes:
        ms = sorted(t * 1000 for t, _ in scrapes)
        print(f"scrapes={len(scrapes)} (gzip) median {statistics.median(ms):.0f} ms max {ms[-1]:.0f} ms, "
              f"{scrapes[-1][1] / 1e6:.1f} MB gzipped")  # fmt: skip
    print(f"RSS: start {rss_start:.1f} MB, peak {peak:.1f} MB")
    print(f"  target <= 150 MB: {'met' if peak <= 150 else 'NOT met'} (ratio {peak / 150:.2f})")


async def scrape_metrics(port: int) -> tuple[float, int]:
    """One GET /metrics as Prometheus sends it: seconds taken and bytes received (gzipped)."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
    received = 0
    while data := await reader.read(1 << 20):
        received += len(data)
    writer.close()
    return time.monotonic() - t0, received


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vantages", type=int, default=100)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--interval", type=float, default=60)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--scrape-interval", type=float, default=15)
    asyncio.run(main(parser.parse_args()))
