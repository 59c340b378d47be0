"""Run `curfew run` as a subprocess against an in-process lab, and look at what it produced."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from probe.lab.lab import Lab
from probe.store.engine import create_engine

CURFEW = [sys.executable, "-m", "probe.cli"]
FAST_PROBE: dict[str, Any] = {
    "timeouts": {
        "dns": 1.0,
        "tcp_connect": 1.0,
        "tls_handshake": 1.0,
        "http_request": 2.0,
        "throughput": 3.0,
        "total": 5.0,
    },
    "throughput_max_seconds": 0.5,
    "idle_reset_wait": 0.2,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_config(lab: Lab, tmp_path: Path, database: str, **overrides: Any) -> dict[str, Any]:
    data = lab.curfew_config()
    data.update(
        {
            "interval": 4,
            "confirm_interval": 1,
            "confirm_count": 2,
            "grace_period": 5,
            "data_dir": str(tmp_path / "data"),
            "database": database,
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
            "probe": FAST_PROBE,
        }
    )
    data.update(overrides)
    return data


@dataclass
class Daemon:
    config_path: Path
    config: dict[str, Any]
    proc: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config['metrics']['listen']}/metrics"

    def write(self, config: dict[str, Any] | None = None) -> None:
        if config is not None:
            self.config = config
        self.config_path.write_text(yaml.safe_dump(self.config))

    async def start(self, ready_timeout: float = 30) -> None:
        await self.spawn()
        await self.wait_for(lambda: self.seen("event=ready"), ready_timeout, "ready")

    async def spawn(self) -> None:
        """Start the process and read its log; does not wait for READY."""
        self.write()
        self.proc = await asyncio.create_subprocess_exec(
            *CURFEW,
            "run",
            "--config",
            str(self.config_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.ensure_future(self._read())

    def seen(self, text: str) -> bool:
        """Whether a log line so far contains `text`."""
        return any(text in line for line in self.lines)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def wait_for(self, check: Any, timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) waiting for {what}:\n"
                    + "\n".join(self.lines[-30:])
                )
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(self.lines[-30:]))
            await asyncio.sleep(0.1)

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    def measurement_lines(self) -> list[str]:
        return [line for line in self.lines if "event=measurement " in line]

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with httpx.AsyncClient() as client:
            response = await client.get(self.metrics_url, timeout=5)
        response.raise_for_status()
        out = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out


async def query(database: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


class Relay:
    """A TCP relay to the database that the test can cut and restore (PostgreSQL 'outage')."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.frozen = False

    async def freeze(self) -> None:
        """The database hangs: connections stay open and new ones are accepted, and nothing
        goes through in either direction (until `cut`)."""
        self.frozen = True
        for writer in self._writers:
            writer.transport.pause_reading()

    async def restore(self) -> None:
        self.frozen = False
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from probe.lab.splice import splice

        if self.frozen:
            self._writers.add(writer)  # held open, never answered; `cut` aborts it
            return
        try:
            upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, upstream[1]))
        try:
            await splice((reader, writer), upstream)
        finally:
            self._writers.discard(writer)
            self._writers.discard(upstream[1])
