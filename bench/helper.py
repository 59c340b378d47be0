"""`curfew helper` on this machine: requests/s, and the latency a helper adds to a probe.

    .venv/bin/python bench/helper.py [--seconds S] [--concurrency N] [--samples K]

Three processes on loopback: the lab (``curfew lab serve --ephemeral``: DNS, an HTTPS site
with a CA), the helper (``curfew helper`` with the lab's resolver and CA, --allow-private, no
rate limit) and this client.

1. Throughput: N clients, each on its own keep-alive connection, POST a THRequest for the
   lab's https:// site (with the probe's address, as a vantage sends it) for S seconds. Every
   answer must be a 200 with a THResponse whose page fetch succeeded. Reported: answers/s,
   latency percentiles, and the helper's CPU per answer (utime+stime from /proc/PID/stat).
2. Latency a helper adds: K rounds, one at a time, of (a) the probe alone (``engine.measure``
   of the site from the lab's censored vantage), (b) the helper asked alone, (c) both at
   once. The daemon asks right after the probe (docs/configuration.md, `helpers[]`), which
   adds (b); asking in parallel would add the median of (c) minus the median of (a).

The helper's answer measures the same site the probe does (DNS, TCP, TLS, GET): the work per
request is a probe's, plus parsing and JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
CURFEW = [sys.executable, "-m", "probe.cli"]
TICK = os.sysconf("SC_CLK_TCK")

SCENARIO = {
    "name": "helper-bench",
    "timezone": "UTC",
    "dns": {"listen": "127.0.0.1:0"},
    "vantages": [
        {"name": "censored", "address": "127.0.0.2"},
        {"name": "control", "address": "127.0.0.9", "control": True},
    ],
    "targets": [
        {
            "name": "site",
            "hosts": ["www.site.lab"],
            "address": "127.0.3.1",
            "port": 0,
            "title": "The Site",
            "bulk": False,  # no throughput_url: the probe is DNS, TCP, TLS and one GET, like the helper's
        },
    ],
    "rules": [],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start_lab(state: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    scenario = state / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    proc = subprocess.Popen(
        [*CURFEW, "lab", "serve", "--scenario", str(scenario), "--state-dir", str(state), "--ephemeral"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "running" not in line:
        proc.kill()
        raise SystemExit(f"the lab did not start: {line!r}")
    return proc, yaml.safe_load((state / "curfew.yaml").read_text())


def start_helper(
    state: Path, config: dict[str, Any], port: int, metrics_port: int
) -> subprocess.Popen[bytes]:
    resolver = config["vantages"][0]["resolver"]
    helper_file = state / "helper.yaml"
    helper_file.write_text(
        yaml.safe_dump(
            {
                "helper": {
                    "listen": f"127.0.0.1:{port}",
                    "metrics_listen": f"127.0.0.1:{metrics_port}",
                    "resolver": resolver,
                    "source_address": "127.0.0.9",
                    "ca_bundle": config["tls"]["ca_bundle"],
                    "allow_private": True,
                    "rate": 0,
                    "max_concurrency": 256,
                    "max_connections_per_client": 1024,
                }
            }
        )
    )
    log = state / "helper.log"  # a file, not a pipe: a pipe nobody reads would block its logging
    with log.open("w") as out:
        proc = subprocess.Popen([*CURFEW, "helper", "--config", str(helper_file)], stderr=out, cwd=ROOT)
    for _ in range(300):
        if "event=helper-started" in log.read_text():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the helper did not start: {log.read_text()[-500:]}")


def the_request(config: dict[str, Any]) -> tuple[str, bytes]:
    from probe.helper.protocol import THRequest, dumps

    url = next(t["url"] for t in config["targets"] if t["name"] == "site")
    port = url.rsplit(":", 1)[1].rstrip("/")
    return url, dumps(THRequest(url, {"User-Agent": ("curfew-bench",)}, (f"127.0.3.1:{port}",)))


class RawClient:
    """One keep-alive connection speaking just enough HTTP/1.1 to POST and read an answer.

    httpx costs milliseconds of CPU per request and tens to set up a client; on a 2-core machine
    64 of them would measure the load generator, not the helper.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST / HTTP/1.1\r\nHost: helper\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def check_answer(status: int, data: bytes) -> None:
    from probe.helper.protocol import parse_response

    if status != 200:
        raise SystemExit(f"helper answered {status}: {data[:200]!r}")
    if parse_response(data).http_request.status_code != 200:
        raise SystemExit(f"the helper's fetch failed: {data[:300]!r}")


async def throughput(
    port: int, body: bytes, seconds: float, concurrency: int, pid: int, lab_pid: int
) -> dict[str, float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def client() -> None:
        raw = RawClient(port)
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                status, data = await raw.post(body)
                latencies.append(time.perf_counter() - t0)
                check_answer(status, data)
        finally:
            raw.close()

    mine = os.times()
    cpu0, lab0, t0 = cpu_seconds(pid), cpu_seconds(lab_pid), time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    cpu1, lab1, elapsed = cpu_seconds(pid), cpu_seconds(lab_pid), time.monotonic() - t0
    done = os.times()
    latencies.sort()
    n = len(latencies)
    return {
        "answers": n,
        "per_s": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p95_ms": latencies[int(n * 0.95)] * 1000,
        "helper_cpu_ms": (cpu1 - cpu0) * 1000 / n,
        "lab_cpu_ms": (lab1 - lab0) * 1000 / n,
        "client_cpu_ms": (done.user + done.system - mine.user - mine.system) * 1000 / n,
    }


async def served(metrics_port: int) -> tuple[float, float]:
    """(count, sum) of the helper's own request-duration histogram."""
    async with httpx.AsyncClient(trust_env=False) as c:
        text = (await c.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "curfew_helper_request_duration_seconds_count",
            "curfew_helper_request_duration_seconds_sum",
        ):
            values[name] = float(value)
    return (
        values["curfew_helper_request_duration_seconds_count"],
        values["curfew_helper_request_duration_seconds_sum"],
    )


async def added_latency(
    helper_url: str, body: bytes, config: dict[str, Any], samples: int
) -> dict[str, float]:
    from probe.config import parse_config
    from probe.engine import measure
    from probe.vantage import vantage_network

    cfg = parse_config({**config, "vantages": [config["vantages"][0]]})
    target, net = cfg.target("site"), vantage_network(cfg.vantages[0], cfg)
    alone: list[float] = []
    helper: list[float] = []
    both: list[float] = []
    async with httpx.AsyncClient(trust_env=False, timeout=30) as c:

        async def ask() -> None:
            resp = await c.post(helper_url, content=body)
            check_answer(resp.status_code, resp.content)

        async def probe() -> None:
            m = await measure(target, net, cfg.probe)
            if m.http is None or m.http.status != 200:
                raise SystemExit(f"the probe failed: {m}")

        for _ in range(3):  # warm-up: imports, TLS session setup, the helper's first request
            await asyncio.gather(probe(), ask())
        for _ in range(samples):
            for bucket, work in ((alone, probe), (helper, ask)):
                t0 = time.perf_counter()
                await work()
                bucket.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await asyncio.gather(probe(), ask())
            both.append(time.perf_counter() - t0)
    med = {
        name: statistics.median(v) * 1000
        for name, v in (("probe", alone), ("helper", helper), ("both", both))
    }
    med["added"] = med["both"] - med["probe"]
    return med


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="curfew-helper-bench-") as tmp:
        state = Path(tmp)
        lab, config = start_lab(state)
        helper_port, metrics_port = free_port(), free_port()
        try:
            helper = start_helper(state, config, helper_port, metrics_port)
        except BaseException:
            lab.kill()
            lab.wait()
            raise
        try:
            helper_url = f"http://127.0.0.1:{helper_port}/"
            _, body = the_request(config)
            print(
                f"machine: {os.cpu_count()} CPUs, shared (other developers' jobs run alongside); "
                f"load average at start {os.getloadavg()[0]:.2f}"
            )
            lat = await added_latency(helper_url, body, config, args.samples)
            print(
                f"latency, median of {args.samples} (ms): probe alone {lat['probe']:.2f}, helper asked alone "
                f"{lat['helper']:.2f}, both at once {lat['both']:.2f} -> asked after the probe (as the "
                f"daemon does) a helper adds {lat['helper']:.2f} ms; asked in parallel {lat['added']:.2f} ms"
            )
            for concurrency in args.concurrency:
                before = await served(metrics_port)
                r = await throughput(helper_port, body, args.seconds, concurrency, helper.pid, lab.pid)
                after = await served(metrics_port)
                inside = (after[1] - before[1]) / max(1.0, after[0] - before[0]) * 1000
                print(
                    f"throughput, {concurrency:3d} clients x {args.seconds:.0f} s: "
                    f"{r['per_s']:7.1f} answers/s ({r['answers']:.0f}), "
                    f"latency p50 {r['p50_ms']:.1f} ms p95 {r['p95_ms']:.1f} ms, "
                    f"mean {inside:.1f} ms of it inside the helper's measurement; "
                    f"CPU per answer: helper {r['helper_cpu_ms']:.2f} ms, lab {r['lab_cpu_ms']:.2f} ms, "
                    f"client {r['client_cpu_ms']:.2f} ms"
                )
            print(f"load average at the end {os.getloadavg()[0]:.2f}")
        finally:
            for proc in (helper, lab):
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per throughput run")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16, 64], help="clients in flight (one run each)"
    )
    parser.add_argument("--samples", type=int, default=50, help="rounds for the latency figures")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from probe.commands.common import run_async

    run_async(main_async(args))  # uvloop, as the daemon and the helper run


if __name__ == "__main__":
    main()
