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

    wall0 = time.monotonic()
    await asyncio.gather(*(conn() for _ in range(args.concurrency)))
    return {"probes": done, "failed": failed, "wall": time.monotonic() - wall0, "sample": sample}


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
        return self._spawn(argv, stdout=subprocess.PIPE)

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


def orchestrate(args: argparse.Namespace) -> None:
    bench = Bench(args)
    try:
        bench.make_certs()
        origin = bench.start_origin()
        n, seconds, warm = args.probes, args.seconds, max(20, args.probes // 20)
        out: dict[str, Any] = {}

        # curfew: sequential CPU per probe, without and with DNS.
        for dns in (False, True):
            r = bench.result(bench.role("curfew", n=n, warmup=warm, concurrency=1, **bench.curfew_opts(dns)))
            if r["failed"]:
                raise SystemExit(f"curfew: {r['failed']} failed probes")
            out[f"curfew_cpu_{'dns' if dns else 'nodns'}"] = 1000 * r["cpu"] / r["probes"]

        # curfew: machine saturated, one worker per core.
        for dns in (False, True):
            o0, m0 = _proc_cpu(origin.pid), _machine_busy()
            workers = [
                bench.role(
                    "curfew",
                    seconds=seconds,
                    warmup=warm,
                    concurrency=args.concurrency,
                    **bench.curfew_opts(dns),
                )
                for _ in range(args.workers)
            ]
            rs = [bench.result(w) for w in workers]
            o1, m1 = _proc_cpu(origin.pid), _machine_busy()
            probes = sum(r["probes"] for r in rs)
            if any(r["failed"] for r in rs):
                raise SystemExit(f"curfew under load: {sum(r['failed'] for r in rs)} failed probes")
            key = "dns" if dns else "nodns"
            out[f"curfew_rate_{key}"] = probes / max(r["wall"] for r in rs)
            out[f"curfew_loadcpu_{key}"] = 1000 * sum(r["cpu"] for r in rs) / probes
            out[f"curfew_origin_{key}"] = 1000 * (o1 - o0) / probes
            out[f"curfew_busy_{key}"] = (m1[0] - m0[0]) / (m1[1] - m0[1])

        # blackbox_exporter: sequential CPU per probe, then saturated.
        bb = bench.start_blackbox()
        url = f"https://{HOST}:{bench.port}/"
        bench.result(bench.role("drive", url=url, port=bench.bb_port, n=warm, concurrency=1))
        c0 = _proc_cpu(bb.pid)
        r = bench.result(bench.role("drive", url=url, port=bench.bb_port, n=n, concurrency=1))
        c1 = _proc_cpu(bb.pid)
        if r["failed"]:
            raise SystemExit(f"blackbox: {r['failed']} probes without probe_success 1:\n{r['sample']}")
        out["bb_cpu"] = 1000 * (c1 - c0) / r["probes"]
        c0, o0, m0 = _proc_cpu(bb.pid), _proc_cpu(origin.pid), _machine_busy()
        inflight = args.workers * args.concurrency
        r = bench.result(
            bench.role("drive", url=url, port=bench.bb_port, seconds=seconds, concurrency=inflight)
        )
        c1, o1, m1 = _proc_cpu(bb.pid), _proc_cpu(origin.pid), _machine_busy()
        if r["failed"]:
            raise SystemExit(f"blackbox under load: {r['failed']} failed probes:\n{r['sample']}")
        out["bb_rate"] = r["probes"] / r["wall"]
        out["bb_loadcpu"] = 1000 * (c1 - c0) / r["probes"]
        out["bb_origin"] = 1000 * (o1 - o0) / r["probes"]
        out["bb_busy"] = (m1[0] - m0[0]) / (m1[1] - m0[1])
        report(args, out)
    finally:
        bench.close()


def report(args: argparse.Namespace, o: dict[str, float]) -> None:
    import ssl

    print(
        f"machine: {os.cpu_count()} CPUs, {ssl.OPENSSL_VERSION}; leaf key {args.key}; "
        f"{args.probes} sequential probes, {args.seconds:g} s saturated "
        f"({args.workers} workers x {args.concurrency} in flight)"
    )
    print("CPU per probe (sequential, one process) and probes/s (machine saturated):")
    for key, label in (("nodns", "curfew TCP+TLS+HTTP (IP literal)"), ("dns", "curfew DNS+TCP+TLS+HTTP")):
        print(
            _fmt(
                label,
                o[f"curfew_cpu_{key}"],
                o[f"curfew_rate_{key}"],
                f"[load: {o[f'curfew_loadcpu_{key}']:.3f} ms/probe, origin {o[f'curfew_origin_{key}']:.3f}"
                f" ms/probe, machine {100 * o[f'curfew_busy_{key}']:.0f}% busy]",
            )
        )
    print(
        _fmt(
            "blackbox_exporter 0.23 (IP literal)",
            o["bb_cpu"],
            o["bb_rate"],
            f"[load: {o['bb_loadcpu']:.3f} ms/probe, origin {o['bb_origin']:.3f} ms/probe, "
            f"machine {100 * o['bb_busy']:.0f}% busy, driver included]",
        )
    )
    cpu_ratio = o["curfew_cpu_nodns"] / o["bb_cpu"]
    rate_ratio = o["curfew_rate_nodns"] / o["bb_rate"]
    print("ratios (like for like: IP literal, no DNS):")
    print(
        f"  CPU/probe  curfew / blackbox = {cpu_ratio:.2f}  (target <= 0.80: "
        f"{'met' if cpu_ratio <= 0.8 else 'NOT met'})"
    )
    print(
        f"  probes/s   curfew / blackbox = {rate_ratio:.2f}  (target >= 1.20: "
        f"{'met' if rate_ratio >= 1.2 else 'NOT met'})"
    )
    print(
        f"  with DNS:  CPU {o['curfew_cpu_dns'] / o['bb_cpu']:.2f}x, "
        f"probes/s {o['curfew_rate_dns'] / o['bb_rate']:.2f}x (curfew also does A+AAAA)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=2000, help="sequential probes per CPU figure")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each saturated run")
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa", help="leaf and CA key type")
    parser.add_argument("--port", type=int, default=8443, help=f"origin port on {HOST} (0: any free)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=32, help="probes in flight per worker")
    # Internal: the worker roles this script runs in its subprocesses.
    parser.add_argument("--role", choices=("curfew", "drive"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
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
