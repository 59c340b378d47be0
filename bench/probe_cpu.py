"""CPU per probe and probes/s: curfew's layered probe against prometheus-blackbox-exporter.

    .venv/bin/python bench/probe_cpu.py [--probes N] [--seconds S] [--key ecdsa|rsa]

Both probers hit the same HTTPS origin (bench/lab_https.py, its own process, so its CPU is
not counted against either), a fresh TCP connection and full TLS 1.3 handshake per probe,
certificate validated against the bench CA, then one HTTP/1.1 GET of a ~3 KB page.

- curfew, no DNS: ``probe.engine.measure`` on ``https://127.0.0.5:PORT/`` (the leaf has an
  IP SAN, so validation covers the address). This is the like-for-like comparison:
  blackbox_exporter cannot be pointed at a custom DNS server for http probes, so it gets the
  same IP-literal URL.
- curfew, DNS: the same on ``https://www.curfew-bench.lab:PORT/``, resolved with real A and
  AAAA queries (dnspython, UDP) against a DNS server in the origin process.
- blackbox: ``/probe?module=http_2xx&target=https://127.0.0.5:PORT/`` over keep-alive
  HTTP/1.1 from a small asyncio client in another process; every reply must say
  ``probe_success 1``.

CPU per probe is process CPU (user+sys) divided by probes: for curfew, ``os.times()`` in a
worker running probes one after another (after a warm-up); for blackbox, utime+stime from
/proc/PID/stat around a run of sequential requests. probes/s is with the machine saturated:
two curfew worker processes (one per core) each with many probes in flight, versus
blackbox (Go, all cores) driven with the same number of requests in flight. The origin runs
on the same two cores throughout and its share is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.5"
NAME = "www.curfew-bench.lab"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- worker roles (subprocesses)


def _curfew_net(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from probe.config import parse_config
    from probe.vantage import vantage_network

    config = parse_config(
        {
            "tls": {"ca_bundle": args.ca},
            "vantages": [{"name": "bench", "resolver": args.resolver}],
            "targets": [{"name": "lab", "url": args.url}],
        }
    )
    return config.targets[0], vantage_network(config.vantages[0], config), config.probe


def _ok(m: Any) -> bool:
    return bool(
        m.http is not None
        and m.http.failure is None
        and m.http.status == 200
        and m.tls
        and m.tls[0].valid
        and m.tls[0].peer_chain
    )


async def _curfew(args: argparse.Namespace) -> dict[str, Any]:
    from probe.engine import measure

    target, net, settings = _curfew_net(args)
    for _ in range(args.warmup):
        if not _ok(await measure(target, net, settings)):
            raise SystemExit(f"curfew warm-up probe failed: {await measure(target, net, settings)}")
    if args.sync:  # tell the orchestrator the warm-up is over; start when it says so
        print("ready", flush=True)
        sys.stdin.readline()
    done = failed = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None

    async def loop(n: int | None) -> None:
        nonlocal done, failed
        while (n is None or done + failed < n) and (deadline is None or time.monotonic() < deadline):
            m = await measure(target, net, settings)
            if _ok(m):
                done += 1
            else:
                failed += 1

    cpu0, wall0 = os.times(), time.monotonic()
    await asyncio.gather(*(loop(args.n) for _ in range(args.concurrency)))
    cpu1, wall1 = os.times(), time.monotonic()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"probes": done, "failed": failed, "cpu": cpu, "wall": wall1 - wall0}


async def _drive(args: argparse.Namespace) -> dict[str, Any]:
    """Keep-alive HTTP/1.1 GETs of blackbox's /probe, `concurrency` connections."""
    request = f"GET /probe?module=http_2xx&target={args.url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    done = failed = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    sample = ""

    async def conn() -> None:
        nonlocal done, failed, sample
        reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
        try:
            while (args.n is None or done + failed < args.n) and (
                deadline is None or time.monotonic() < deadline
            ):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = -1
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length >= 0:
                    body = await reader.readexactly(length)
                else:  # chunked
                    parts = []
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        parts.append(await reader.readexactly(size + 2))
                    await reader.readuntil(b"\r\n")
                    body = b"".join(p[:-2] for p in parts)
                if b"\nprobe_success 1\n" in body:
                    done += 1
                else:
                    failed += 1
                    sample = body.decode(errors="replace")[-2000:]
        finally:
            writer.close()

    cpu0, wall0 = os.times(), time.monotonic()
    await asyncio.gather(*(conn() for _ in range(args.concurrency)))
    cpu1, wall1 = os.times(), time.monotonic()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {"probes": done, "failed": failed, "cpu": cpu, "wall": wall1 - wall0, "sample": sample}


def _role_main(args: argparse.Namespace) -> None:
    import uvloop

    result = uvloop.run(_curfew(args) if args.role == "curfew" else _drive(args))
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- orchestration


def _proc_cpu(pid: int) -> float:
    """utime+stime of a whole process (all threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="curfew-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = args.port or _free_port(HOST)
        self.dns_port = _free_port("127.0.0.1", socket.SOCK_DGRAM)
        self.bb_port = _free_port("127.0.0.1")

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_certs(self) -> None:
        import trustme

        key_type = trustme.KeyType.ECDSA if self.args.key == "ecdsa" else trustme.KeyType.RSA
        ca = trustme.CA(key_type=key_type)
        leaf = ca.issue_cert(NAME, HOST, key_type=key_type)
        ca.cert_pem.write_to_path(str(self.dir / "ca.pem"))
        leaf.private_key_pem.write_to_path(str(self.dir / "server.key"))
        (self.dir / "server.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        (self.dir / "name").write_text(NAME)

    def start_origin(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, str(HERE / "lab_https.py"), str(self.dir), HOST, str(self.port)]
        proc = self._spawn([*argv, str(self.dns_port)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit("origin server did not start")
        return proc

    def start_blackbox(self) -> subprocess.Popen[bytes]:
        config = self.dir / "blackbox.yml"
        config.write_text(
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n"
            "      preferred_ip_protocol: ip4\n      no_follow_redirects: true\n"
            f"      tls_config:\n        ca_file: {self.dir / 'ca.pem'}\n"
        )
        argv = [BLACKBOX, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.bb_port}"]
        proc = self._spawn([*argv, "--log.level=warn"], stderr=subprocess.DEVNULL)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.bb_port), 0.1):
                return proc
            time.sleep(0.05)
        raise SystemExit("blackbox_exporter did not start")

    def role(self, name: str, **opts: Any) -> subprocess.Popen[bytes]:
        argv = [sys.executable, str(Path(__file__).resolve()), "--role", name]
        for key, value in opts.items():
            if value is not None:
                argv += [f"--{key}", str(value)]
        return self._spawn(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE)

    @staticmethod
    def wait_ready(procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise SystemExit("worker failed during warm-up")

    @staticmethod
    def go(procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()

    @staticmethod
    def result(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed ({proc.returncode})")
        data: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return data

    def curfew_opts(self, dns: bool) -> dict[str, Any]:
        host = NAME if dns else HOST
        return {
            "url": f"https://{host}:{self.port}/",
            "ca": self.dir / "ca.pem",
            "resolver": f"127.0.0.1:{self.dns_port}",
        }


def _fmt(label: str, cpu_ms: float | None, rate: float | None, note: str = "") -> str:
    cpu = f"{cpu_ms:6.3f} CPU-ms/probe" if cpu_ms is not None else " " * 18
    per_s = f"{rate:7.0f} probes/s" if rate is not None else ""
    return f"  {label:<34} {cpu}  {per_s}  {note}".rstrip()


class Phases:
    """The measurements, each one a function so the rounds can interleave them."""

    def __init__(self, bench: Bench, origin: subprocess.Popen[bytes], bb: subprocess.Popen[bytes]) -> None:
        self.bench, self.origin, self.bb = bench, origin, bb
        args = bench.args
        self.n, self.seconds, self.warm = args.probes, args.seconds, max(20, args.probes // 20)
        self.url = f"https://{HOST}:{bench.port}/"

    def curfew_seq(self, dns: bool) -> dict[str, float]:
        b = self.bench
        r = b.result(b.role("curfew", n=self.n, warmup=self.warm, concurrency=1, **b.curfew_opts(dns)))
        if r["failed"]:
            raise SystemExit(f"curfew: {r['failed']} failed probes")
        return {"cpu": 1000 * r["cpu"] / r["probes"]}

    def curfew_load(self, dns: bool) -> dict[str, float]:
        b, args = self.bench, self.bench.args
        opts = b.curfew_opts(dns)
        workers = [
            b.role(
                "curfew", seconds=self.seconds, warmup=self.warm, concurrency=args.concurrency, sync=1, **opts
            )
            for _ in range(args.workers)
        ]
        b.wait_ready(workers)
        o0, m0 = _proc_cpu(self.origin.pid), _machine_busy()
        b.go(workers)
        rs = [b.result(w) for w in workers]
        o1, m1 = _proc_cpu(self.origin.pid), _machine_busy()
        if any(r["failed"] for r in rs):
            raise SystemExit(f"curfew under load: {sum(r['failed'] for r in rs)} failed probes")
        probes = sum(r["probes"] for r in rs)
        wall = max(r["wall"] for r in rs)
        return self._load_figures(probes, wall, sum(r["cpu"] for r in rs), o1 - o0, m0, m1, 0.0)

    def floor_seq(self) -> dict[str, float]:
        """bench/floor.py: a bare uvloop + ssl client doing the same probe, nothing recorded."""
        argv = [sys.executable, str(HERE / "floor.py"), str(self.bench.dir / "ca.pem"), HOST]
        out = subprocess.run([*argv, str(self.bench.port), str(self.n)], capture_output=True, check=True)
        return {"cpu": float(out.stdout)}

    def bb_seq(self) -> dict[str, float]:
        b = self.bench
        b.result(b.role("drive", url=self.url, port=b.bb_port, n=self.warm, concurrency=1))
        c0 = _proc_cpu(self.bb.pid)
        r = b.result(b.role("drive", url=self.url, port=b.bb_port, n=self.n, concurrency=1))
        c1 = _proc_cpu(self.bb.pid)
        if r["failed"]:
            raise SystemExit(f"blackbox: {r['failed']} probes without probe_success 1:\n{r['sample']}")
        return {"cpu": 1000 * (c1 - c0) / r["probes"]}

    def bb_load(self) -> dict[str, float]:
        b, args = self.bench, self.bench.args
        c0, o0, m0 = _proc_cpu(self.bb.pid), _proc_cpu(self.origin.pid), _machine_busy()
        inflight = args.workers * args.concurrency
        r = b.result(
            b.role("drive", url=self.url, port=b.bb_port, seconds=self.seconds, concurrency=inflight)
        )
        c1, o1, m1 = _proc_cpu(self.bb.pid), _proc_cpu(self.origin.pid), _machine_busy()
        if r["failed"]:
            raise SystemExit(f"blackbox under load: {r['failed']} failed probes:\n{r['sample']}")
        return self._load_figures(r["probes"], r["wall"], c1 - c0, o1 - o0, m0, m1, r["cpu"])

    @staticmethod
    def _load_figures(
        probes: int,
        wall: float,
        prober: float,
        origin: float,
        m0: tuple[float, float],
        m1: tuple[float, float],
        driver: float,
    ) -> dict[str, float]:
        busy = (m1[0] - m0[0]) / (m1[1] - m0[1])
        machine = (m1[0] - m0[0]) / TICK  # CPU-seconds used by everything during the phase
        own = prober + origin + driver
        return {
            "rate": probes / wall,
            # What the machine would do with nothing else running: all CPUs / our CPU per probe.
            "capacity": (os.cpu_count() or 1) * probes / own if own else 0.0,
            "cpu": 1000 * prober / probes,
            "origin": 1000 * origin / probes,
            "driver": 1000 * driver / probes,
            "other": 1000 * max(0.0, machine - prober - origin - driver) / probes,
            "busy": busy,
        }


def orchestrate(args: argparse.Namespace) -> None:
    bench = Bench(args)
    try:
        bench.make_certs()
        phases = Phases(bench, bench.start_origin(), bench.start_blackbox())
        runs: dict[str, list[dict[str, float]]] = {}
        order = (
            ("curfew_seq_nodns", lambda: phases.curfew_seq(False)),
            ("bb_seq", phases.bb_seq),
            ("curfew_seq_dns", lambda: phases.curfew_seq(True)),
            ("floor_seq", phases.floor_seq),
            ("curfew_load_nodns", lambda: phases.curfew_load(False)),
            ("bb_load", phases.bb_load),
            ("curfew_load_dns", lambda: phases.curfew_load(True)),
        )
        # Rounds interleave the probers, so background load on a shared machine hits both alike.
        for _ in range(args.rounds):
            for key, run in order:
                runs.setdefault(key, []).append(run())
        report(args, runs)
    finally:
        bench.close()


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    """The round with the most probes/s (load) or the least CPU/probe (sequential)."""
    if "rate" in runs[0]:
        return max(runs, key=lambda r: r["rate"])
    return min(runs, key=lambda r: r["cpu"])


def _spread(runs: list[dict[str, float]], key: str) -> str:
    return "/".join(f"{r[key]:.3f}" if key == "cpu" else f"{r[key]:.0f}" for r in runs)


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]]) -> None:
    import ssl

    best = {key: _best(value) for key, value in runs.items()}
    print(
        f"machine: {os.cpu_count()} CPUs, {ssl.OPENSSL_VERSION}; leaf key {args.key}; "
        f"{args.rounds} interleaved rounds of {args.probes} sequential probes and {args.seconds:g} s "
        f"saturated ({args.workers} curfew workers x {args.concurrency} in flight; blackbox "
        f"{args.workers * args.concurrency} in flight); best round shown, all rounds in brackets"
    )
    print("CPU-ms per probe, sequential in one process:")
    rows = (
        ("curfew TCP+TLS+HTTP (IP literal)", "curfew_seq_nodns"),
        ("curfew DNS+TCP+TLS+HTTP", "curfew_seq_dns"),
        ("blackbox_exporter (IP literal)", "bb_seq"),
        ("floor: bare uvloop+ssl client", "floor_seq"),
    )
    for label, key in rows:
        print(f"  {label:<34} {best[key]['cpu']:6.3f}   [{_spread(runs[key], 'cpu')}]")
    print("machine saturated: probes/s, and CPU-ms per probe of prober / origin / load driver / rest:")
    rows = (
        ("curfew TCP+TLS+HTTP (IP literal)", "curfew_load_nodns"),
        ("curfew DNS+TCP+TLS+HTTP", "curfew_load_dns"),
        ("blackbox_exporter (IP literal)", "bb_load"),
    )
    for label, key in rows:
        r = best[key]
        print(
            f"  {label:<34} {r['rate']:6.0f}/s [{_spread(runs[key], 'rate')}]  prober {r['cpu']:.3f}, "
            f"origin {r['origin']:.3f}, driver {r['driver']:.3f}, rest {r['other']:.3f}; "
            f"{100 * r['busy']:.0f}% busy; idle-machine estimate {r['capacity']:.0f}/s"
        )
    cpu_ratio = best["curfew_seq_nodns"]["cpu"] / best["bb_seq"]["cpu"]
    load_cpu_ratio = best["curfew_load_nodns"]["cpu"] / best["bb_load"]["cpu"]
    rate_ratio = best["curfew_load_nodns"]["rate"] / best["bb_load"]["rate"]
    capacity_ratio = best["curfew_load_nodns"]["capacity"] / best["bb_load"]["capacity"]
    print("ratios, like for like (IP literal, no DNS):")
    verdict = "met" if cpu_ratio <= 0.8 else "NOT met"
    print(
        f"  CPU/probe  curfew / blackbox = {cpu_ratio:.2f} sequential, {load_cpu_ratio:.2f} saturated"
        f"  (target <= 0.80 sequential: {verdict})"
    )
    print(
        f"  probes/s   curfew / blackbox = {rate_ratio:.2f}  "
        f"(target >= 1.20: {'met' if rate_ratio >= 1.2 else 'NOT met'}); idle-machine estimate "
        f"{capacity_ratio:.2f} ({'met' if capacity_ratio >= 1.2 else 'NOT met'})"
    )
    print(
        "  ('rest' is CPU used by other processes on the machine during the run; when it is not"
        " small, trust the idle-machine estimate more than the measured probes/s)"
    )
    print(
        f"  curfew with DNS (A+AAAA) vs blackbox without: CPU "
        f"{best['curfew_seq_dns']['cpu'] / best['bb_seq']['cpu']:.2f}x, probes/s "
        f"{best['curfew_load_dns']['rate'] / best['bb_load']['rate']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=1500, help="sequential probes per CPU figure")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each saturated run")
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa", help="leaf and CA key type")
    parser.add_argument("--port", type=int, default=8443, help=f"origin port on {HOST} (0: any free)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=32, help="probes in flight per worker")
    # Internal: the worker roles this script runs in its subprocesses.
    parser.add_argument("--role", choices=("curfew", "drive"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sync", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--resolver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        args.seconds = args.seconds if args.n is None else None
        _role_main(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
