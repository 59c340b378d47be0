"""The lab facade: start a scenario's DNS server, origins and censor fronts together.

    async with Lab(load_scenario("smoke"), state_dir=Path(".lab")) as lab:
        lab.write_config(Path(".lab/curfew.yaml"))
        lab.set_time(datetime(2019, 5, 9, 8, 30, tzinfo=UTC))   # virtual time for the rules

`loss` (0 <= loss < 1) loses that share of connections (reset at the front) and DNS queries
(no reply), drawn from an RNG seeded with `seed`: spurious failures, not censorship.

Rules are evaluated against the lab clock: `clock()` (default: the real UTC time) unless
`set_time` fixed a virtual time. Every clock change re-attaches the SYN filters at once;
a background task also refreshes them every `refresh_interval` seconds of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from probe.lab.ca import LabCA, RogueChain
from probe.lab.censor import Front
from probe.lab.dns_server import DnsServer
from probe.lab.doh import DohServer
from probe.lab.loss import Loss
from probe.lab.origin import Origin
from probe.lab.rules import Policy
from probe.lab.scenario import Scenario, TargetSpec, VantageSpec, load_scenario

if TYPE_CHECKING:
    from probe.helper.server import RunningHelper

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def running_from(start: dt.datetime, monotonic: Callable[[], float] = time.monotonic) -> Clock:
    """A clock that reads `start` now and advances with real time from there."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    origin = monotonic()
    return lambda: start.astimezone(dt.UTC) + dt.timedelta(seconds=monotonic() - origin)


def target_url(target: TargetSpec, port: int, path: str = "/") -> str:
    default = 443 if target.scheme == "https" else 80
    netloc = target.hosts[0] if port == default else f"{target.hosts[0]}:{port}"
    return f"{target.scheme}://{netloc}{path}"


def scenario_config(
    scenario: Scenario,
    dns: tuple[str, int],
    ca_bundle: Path,
    port_of: Callable[[TargetSpec], int],
    skip: Sequence[VantageSpec] = (),
) -> dict[str, Any]:
    """A curfew config (probe/config.py shape) probing `scenario`'s probed targets from its
    vantages (but `skip`), with the DNS server at `dns`, the lab's CA trusted and each target
    on `port_of(target)`: what the kernel lab and the in-memory one both hand the probe."""
    host, port = dns
    vantages = [
        {
            "name": v.name,
            "timezone": scenario.timezone,
            "source_address": v.address,
            "resolver": f"{host}:{port}",
            "control": v.control,
            "labels": {"lab": scenario.name},
            **{
                key: value
                for key in ("probe_cc", "probe_asn", "probe_network_name")
                if (value := getattr(v, key)) is not None
            },
        }
        for v in scenario.vantages
        if v not in skip
    ]
    targets = []
    for target in scenario.targets:
        if not target.probe:
            continue
        entry: dict[str, Any] = {
            "name": target.name,
            "url": target_url(target, port_of(target)),
            "control": target.control,
        }
        if target.bulk:
            entry["throughput_url"] = target_url(target, port_of(target), target.bulk_path)
        targets.append(entry)
    return {"tls": {"ca_bundle": str(ca_bundle)}, "vantages": vantages, "targets": targets}


class Lab:
    """A running scenario on loopback. Use as ``async with Lab(...) as lab``."""

    def __init__(
        self,
        scenario: Scenario,
        state_dir: Path,
        clock: Clock | None = None,
        refresh_interval: float = 0.2,
        *,
        loss: float = 0.0,
        seed: int | None = None,
        helper_probe: Mapping[str, Any] | None = None,
    ) -> None:
        self.scenario = scenario
        self.loss = Loss(loss, seed)
        self.state_dir = Path(state_dir)
        self.policy = Policy(scenario)
        self._clock = clock or utc_now
        self._fixed: dt.datetime | None = None
        self._refresh_interval = refresh_interval
        self._ca: LabCA | None = None
        self._dns: DnsServer | None = None
        self._doh: DohServer | None = None
        self._origins: dict[str, Origin] = {}
        self._fronts: dict[str, Front] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._helper_probe = dict(helper_probe or {})
        self._helpers: dict[str, RunningHelper] = {}

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        try:
            self._ca = LabCA(self.state_dir)
            rogue = RogueChain(self.state_dir)
            host, port = self.scenario.dns.host_port
            self._dns = DnsServer(self.policy, self.now, host, port, self.loss)
            await self._dns.start()
            # DNS over HTTPS beside the plain server, with the same answers and rules.
            doh_context = self._ca.server_context("doh", (host,))
            self._doh = DohServer(self.policy, self.now, host, doh_context)
            await self._doh.start()
            for target in self.scenario.targets:
                if target.down:
                    continue
                context = None
                if target.scheme == "https":
                    context = self._ca.server_context(target.name, tuple(target.hosts))
                origin = Origin(target, context)
                self._origins[target.name] = origin
                await origin.start()
                front = Front(
                    target, self.policy, self.now, origin.port, rogue, self._ca.client_context(), self.loss
                )
                self._fronts[target.name] = front
                await front.start()
            for vantage in self.scenario.helper_vantages:
                self._helpers[vantage.name] = await self._start_helper(vantage)
            self._refresher = asyncio.ensure_future(self._refresh_loop())
        except BaseException:
            await self.close()
            raise

    async def _start_helper(self, vantage: VantageSpec) -> RunningHelper:
        """`curfew helper` where the control vantage is: its address as listen and source
        address, the lab's resolver and CA, bogon targets allowed (the lab is loopback)."""
        from probe.helper.server import serve_helper
        from probe.helper.settings import HelperFile

        host, port = self.dns_address
        settings = HelperFile.model_validate(
            {
                "helper": {
                    "listen": f"{vantage.address}:{vantage.helper_port}",
                    "resolver": f"{host}:{port}",
                    "source_address": vantage.address,
                    "ca_bundle": str(self.ca_pem_path),
                    "allow_private": True,
                },
                "probe": self._helper_probe,
            }
        )
        return await serve_helper(settings)

    async def close(self) -> None:
        for running in self._helpers.values():
            await running.close()
        self._helpers.clear()
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        for front in self._fronts.values():
            await front.close()
        for origin in self._origins.values():
            await origin.close()
        if self._doh is not None:
            await self._doh.close()
            self._doh = None
        if self._dns is not None:
            await self._dns.close()
        self._fronts.clear()
        self._origins.clear()
        self._dns = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            self._refresh()

    def _refresh(self) -> None:
        for front in self._fronts.values():
            front.refresh()

    # -- time --------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The lab's current time (aware, UTC): the fixed virtual time if set, else the clock."""
        return self._fixed if self._fixed is not None else self._clock()

    def set_time(self, when: dt.datetime) -> None:
        """Fix the lab's time at `when` (aware) until `clear_time`; filters follow at once."""
        if when.tzinfo is None:
            raise ValueError("set_time needs a timezone-aware datetime")
        self._fixed = when.astimezone(dt.UTC)
        self._refresh()

    def clear_time(self) -> None:
        self._fixed = None
        self._refresh()

    # -- where things are --------------------------------------------------------------

    @property
    def dns_address(self) -> tuple[str, int]:
        if self._dns is None:
            raise RuntimeError("the lab is not running")
        return self._dns.host, self._dns.port

    @property
    def doh_url(self) -> str:
        """The lab's DNS-over-HTTPS endpoint (a vantage's `resolver: https://...`)."""
        if self._doh is None:
            raise RuntimeError("the lab is not running")
        return self._doh.url

    @property
    def ca_pem_path(self) -> Path:
        if self._ca is None:
            raise RuntimeError("the lab is not running")
        return self._ca.ca_pem_path

    def target_port(self, name: str) -> int:
        """The port the target listens on (the real one when the scenario said 0)."""
        target = self.scenario.target(name)
        front = self._fronts.get(name)
        return front.port if front is not None else target.listen_port

    def filters_work(self) -> bool:
        """False if some front fell back to accept-and-silence for tcp_drop/blackhole."""
        return all(front.filter_works for front in self._fronts.values())

    @property
    def helper_urls(self) -> list[str]:
        """The URLs of the test helpers the lab runs (scenario vantages with `helper: true`)."""
        return [running.url for running in self._helpers.values()]

    def curfew_config(self) -> dict[str, Any]:
        """A curfew config (probe/config.py shape) that probes this lab from every vantage.

        A vantage served as a test helper is not probed from: the config lists it under
        `helpers:` instead, and has no control vantage.
        """
        config = scenario_config(
            self.scenario,
            self.dns_address,
            self.ca_pem_path,
            lambda target: self.target_port(target.name),
            skip=self.scenario.helper_vantages,
        )
        if self._helpers:
            config["helpers"] = [{"url": url} for url in self.helper_urls]
        return config

    def write_config(self, path: Path) -> Path:
        """Write `curfew_config()` as YAML to `path`; return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.curfew_config(), sort_keys=False), encoding="utf-8")
        return path


async def serve(
    scenario_path: str | Path,
    state_dir: Path,
    at: dt.datetime | None = None,
    *,
    ephemeral: bool = False,
    helper: bool = False,
) -> None:
    """Run a scenario until cancelled; print where the curfew config was written.

    `at` starts the lab clock at that moment (it then advances in real time); `ephemeral`
    replaces every port with a free one (no root needed for 443/80 or 53); `helper` serves
    every control vantage as a test helper.
    """
    scenario = load_scenario(scenario_path)
    if helper:
        scenario = scenario.with_helpers()
    if ephemeral:
        scenario = scenario.ephemeral()
    clock = running_from(at) if at is not None else None
    async with Lab(scenario, Path(state_dir), clock=clock) as lab:
        config_path = lab.write_config(Path(state_dir) / "curfew.yaml")
        host, port = lab.dns_address
        helpers = "".join(f", test helper {url}" for url in lab.helper_urls)
        print(
            f"lab {scenario.name!r} running: DNS {host}:{port}, CA {lab.ca_pem_path}{helpers}, "
            f"config written to {config_path}",
            flush=True,
        )
        await asyncio.Event().wait()
