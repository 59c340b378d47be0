"""Lab scenarios: YAML files validated into frozen pydantic models.

`load_scenario(path)` returns a `Scenario` or raises `ScenarioError` whose one-line message
names the file and the key, e.g. ``smoke.yaml: rules[0].action: ...``. The file format is
documented in docs/lab.md; the shipped scenarios live next to this module.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probe.lab.timewindow import WEEKDAYS, Daily, Window, parse_daily
from probe.validation import read_yaml, validate

SCENARIO_DIR = Path(__file__).parent / "scenarios"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Port = Annotated[int, Field(ge=0, le=65535)]

Action = Literal[
    "pass",
    "dns_nxdomain",
    "dns_servfail",
    "dns_refused",
    "dns_bogus",
    "dns_timeout",
    "tcp_reset",
    "tcp_drop",
    "tls_reset",
    "tls_silence",
    "tls_mitm",
    "http_blockpage",
    "http_redirect",
    "throttle",
    "congestion",
    "blackhole",
]
# Network conditions rather than censorship: they reach control targets too.
REACHES_CONTROLS: frozenset[str] = frozenset({"blackhole", "congestion"})
DNS_ACTIONS: frozenset[str] = frozenset(
    {"dns_nxdomain", "dns_servfail", "dns_refused", "dns_bogus", "dns_timeout", "blackhole"}
)
SYN_ACTIONS: frozenset[str] = frozenset({"tcp_drop", "blackhole"})
HTTP_ACTIONS: frozenset[str] = frozenset({"http_blockpage", "http_redirect"})


class ScenarioError(Exception):
    """A scenario problem, worded for the person who wrote the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _loopback(value: str) -> str:
    address = ipaddress.ip_address(value)
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"{value} is not in 127.0.0.0/8 (the lab never leaves loopback)")
    return value


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return _loopback(value), default_port
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad port in {value!r}")
    return _loopback(host), int(port)


class DnsSettings(_Model):
    listen: str = "127.0.0.1:5053"
    """host:port for UDP and TCP; port 0 picks a free one."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_host_port(value, 53)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.listen, 53)


class VantageSpec(_Model):
    name: Name
    address: str
    """The source address the vantage's traffic comes from (127.0.0.0/8)."""
    control: bool = False
    """A control vantage is outside the censor: no rule ever applies to it."""
    helper: bool = False
    """With `control`: the uncensored view comes from a test helper on this address instead
    (the lab runs `curfew helper` there, and the curfew config it writes has no control
    vantage, only `helpers:` pointing at it)."""
    helper_port: Port = 8780
    """The helper's port on `address` (0 picks a free one)."""
    probe_cc: str | None = None
    probe_asn: str | None = None
    probe_network_name: str | None = None
    """OONI's identity of the network the vantage stands for (probe/config.py validates them)."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _loopback(value)

    @model_validator(mode="after")
    def _helper(self) -> VantageSpec:
        if self.helper and not self.control:
            raise ValueError("helper: true needs control: true (a helper is the uncensored view)")
        return self


class TargetSpec(_Model):
    name: Name
    hosts: Annotated[list[str], Field(min_length=1)]
    address: str
    """The target's public lab address; the censor front listens here."""
    port: Port | None = None
    """Default 443 for https, 80 for http; 0 picks a free port."""
    scheme: Literal["https", "http"] = "https"
    title: str | None = None
    """The page title; default: the target name."""
    control: bool = False
    """A control target is never blocked by a targeted rule (a blackhole still cuts it off)."""
    down: bool = False
    """Nothing listens on the address: connection refused for everyone."""
    geo: dict[str, str] = {}
    """vantage name -> another address the lab DNS gives that vantage (serving the same site)."""
    bulk: bool = True
    """Serve a bulk object for throughput checks."""
    bulk_path: str = "/bulk"
    bulk_bytes: Annotated[int, Field(ge=1, le=1 << 30)] = 4 * 1024 * 1024
    probe: bool = True
    """Export the target to the curfew config (false for helper sites such as the warning page)."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _loopback(value)

    @field_validator("geo")
    @classmethod
    def _geo(cls, value: dict[str, str]) -> dict[str, str]:
        for address in value.values():
            _loopback(address)
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [h.lower().rstrip(".") for h in value]

    @field_validator("bulk_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @property
    def listen_port(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if self.scheme == "https" else 80

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address serving the target: the public one, then the geo ones."""
        return (self.address, *dict.fromkeys(a for a in self.geo.values() if a != self.address))


class When(_Model):
    """A time window; every part is optional and all given parts must hold."""

    daily: str | None = None
    """"HH:MM-HH:MM" local wall clock; may cross midnight."""
    days: list[str] | None = None
    """Weekdays (mon..sun) on which the daily window starts."""
    timezone: str | None = None
    """IANA zone for `daily` and for naive from/until; default the scenario's."""
    start: dt.datetime | None = Field(None, alias="from")
    until: dt.datetime | None = None

    @field_validator("daily")
    @classmethod
    def _daily(cls, value: str | None) -> str | None:
        if value is not None:
            parse_daily(value)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        for day in value or ():
            if day.lower() not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            _check_zone(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> When:
        if self.days is not None and self.daily is None:
            raise ValueError("days needs a daily window")
        return self

    def window(self, default_zone: str) -> Window:
        zone = self.timezone or default_zone

        def aware(value: dt.datetime | None) -> dt.datetime | None:
            if value is None or value.tzinfo is not None:
                return value
            return value.replace(tzinfo=ZoneInfo(zone))

        daily = None
        if self.daily is not None:
            start, end = parse_daily(self.daily)
            weekdays = frozenset(WEEKDAYS.index(d.lower()) for d in self.days) if self.days else None
            daily = Daily(start, end, zone, weekdays if weekdays is not None else frozenset(range(7)))
        return Window(aware(self.start), aware(self.until), daily)


class Rule(_Model):
    action: Action
    vantages: list[str] | None = None
    """Vantage names; omitted = every non-control vantage."""
    targets: list[str] | None = None
    """Target names; with `names`, either may match. Both omitted = every name."""
    names: list[str] | None = None
    """Query names / SNI / Host globs such as "*.fbcdn.net"."""
    when: When | None = None
    """Omitted = always."""
    rate_bps: Annotated[int, Field(gt=0)] | None = None
    """throttle / congestion: server-to-client rate in bits per second."""
    address: str | None = None
    """dns_bogus: the address to answer with (default 127.0.0.1)."""
    location: str | None = None
    """http_redirect: where to send the client (default http://warning.lab/)."""
    status: Annotated[int, Field(ge=100, le=599)] | None = None
    """http_blockpage: the status code (default 200); http_redirect: default 302."""
    note: str | None = None
    """Free text: what this rule imitates."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _loopback(value)

    @model_validator(mode="after")
    def _parameters(self) -> Rule:
        if self.action in ("throttle", "congestion") and self.rate_bps is None:
            raise ValueError(f"{self.action} needs rate_bps")
        if self.location is not None and not urlsplit(self.location).hostname:
            raise ValueError("location must be an absolute http:// URL")
        return self

    @property
    def bogus_address(self) -> str:
        return self.address or "127.0.0.1"

    @property
    def redirect_location(self) -> str:
        return self.location or "http://warning.lab/"


class Scenario(_Model):
    name: Name
    description: str | None = None
    timezone: str = "UTC"
    dns: DnsSettings = DnsSettings()
    vantages: Annotated[list[VantageSpec], Field(min_length=1)]
    targets: Annotated[list[TargetSpec], Field(min_length=1)]
    rules: list[Rule] = []
    control_from: Literal["vantage", "helper"] = "vantage"
    """Where the uncensored view comes from: the control vantages probing themselves, or a
    test helper on each control vantage's address (as if every one said `helper: true`)."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        _check_zone(value)
        return value

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        _unique("vantages", [v.name for v in self.vantages])
        _unique("vantage addresses", [v.address for v in self.vantages])
        _unique("targets", [t.name for t in self.targets])
        _unique("target hosts", [h for t in self.targets for h in t.hosts])
        vantages = {v.name: v for v in self.vantages}
        targets = {t.name: t for t in self.targets}
        served = {a for t in self.targets for a in t.addresses}
        if clash := served & {v.address for v in self.vantages}:
            raise ValueError(f"address {sorted(clash)[0]} is both a vantage and a target")
        for target in self.targets:
            for vantage in target.geo:
                if vantage not in vantages:
                    raise ValueError(f"target {target.name!r}: geo names unknown vantage {vantage!r}")
        for index, rule in enumerate(self.rules):
            where = f"rules[{index}]"
            for name in rule.vantages or ():
                if name not in vantages:
                    raise ValueError(f"{where}: unknown vantage {name!r}")
                if vantages[name].control:
                    raise ValueError(f"{where}: {name!r} is a control vantage; rules never apply to it")
            for name in rule.targets or ():
                if name not in targets:
                    raise ValueError(f"{where}: unknown target {name!r}")
                if targets[name].control and rule.action not in REACHES_CONTROLS:
                    raise ValueError(
                        f"{where}: {name!r} is a control target; only blackhole and congestion reach it"
                    )
            if rule.action == "http_redirect":
                host = urlsplit(rule.redirect_location).hostname or ""
                if self.target_for_host(host) is None:
                    raise ValueError(
                        f"{where}: redirect host {host!r} is not a lab target; add a site for it"
                    )
        return self

    def vantage(self, name: str) -> VantageSpec:
        return next(v for v in self.vantages if v.name == name)

    def target(self, name: str) -> TargetSpec:
        return next(t for t in self.targets if t.name == name)

    def vantage_at(self, address: str) -> VantageSpec | None:
        return next((v for v in self.vantages if v.address == address), None)

    def target_for_host(self, host: str) -> TargetSpec | None:
        host = host.lower().rstrip(".")
        return next((t for t in self.targets if host in t.hosts), None)

    def ephemeral(self) -> Scenario:
        """A copy with every port 0 (free ports), for tests and unprivileged runs."""
        host, _ = self.dns.host_port
        return self.model_copy(
            update={
                "dns": DnsSettings(listen=f"{host}:0"),
                "targets": [t.model_copy(update={"port": 0}) for t in self.targets],
                "vantages": [v.model_copy(update={"helper_port": 0}) for v in self.vantages],
            }
        )

    def with_helpers(self) -> Scenario:
        """A copy with every control vantage served as a test helper (`control_from: helper`)."""
        return self.model_copy(update={"control_from": "helper"})

    @property
    def helper_vantages(self) -> list[VantageSpec]:
        """The control vantages served as test helpers (`helper: true`, or `control_from: helper`)."""
        return [v for v in self.vantages if v.helper or (v.control and self.control_from == "helper")]


def _check_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None


def _unique(kind: str, items: list[str]) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{kind}: duplicate {item!r}")
        seen.add(item)


def name_matches(patterns: list[str], name: str) -> bool:
    name = name.lower().rstrip(".")
    return any(fnmatchcase(name, p.lower().rstrip(".")) for p in patterns)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate parsed YAML; raise ScenarioError naming `source` and the key."""
    return validate(Scenario, data, source, ScenarioError)


def _scenario_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.suffix and not path.exists():
        path = SCENARIO_DIR / f"{path}.yaml"
    return path


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; a bare name such as "smoke" means a shipped scenario.

    A file with ``variant_of: NAME`` is that scenario (a shipped name, or a file next to this
    one) with the variant's own top-level keys in place of the base's.
    """
    path = _scenario_path(path)
    data = read_yaml(path, ScenarioError)
    if isinstance(data, dict) and "variant_of" in data:
        base_name = str(data["variant_of"])
        sibling = path.parent / f"{base_name}.yaml"
        base_path = sibling if sibling.exists() else _scenario_path(base_name)
        if base_path.resolve() == path.resolve():
            raise ScenarioError(f"{path.name}: variant_of: a scenario cannot be a variant of itself")
        if not base_path.is_file():
            raise ScenarioError(f"{path.name}: variant_of: no scenario {base_name!r}")
        base = read_yaml(base_path, ScenarioError)
        if not isinstance(base, dict) or "variant_of" in base:
            raise ScenarioError(f"{path.name}: variant_of: {base_name!r} must be a plain scenario")
        data = {**base, **{k: v for k, v in data.items() if k != "variant_of"}}
    return parse_scenario(data, path.name)
