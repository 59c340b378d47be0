"""Configuration: YAML validated on load into frozen pydantic models.

`load_config(path)` returns a `Config` or raises `ConfigError` whose message is one line
naming the file and the key path, e.g. ``curfew.yaml: vantages[0].resolver: ...``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probe import redaction
from probe.validation import read_yaml, validate
from probe.values import check_ca_bundle, check_database_url, check_url, path_kind

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Seconds = Annotated[float, Field(ge=0.01, le=3600)]
"""A deadline: 10 ms (below that every step times out) to an hour."""
# Every number has an upper bound that `run` can live with: APScheduler, timedelta and the
# sockets take these, and 1e300 or a port over 65535 fails there, after `check` said yes.
Interval = Annotated[float, Field(ge=1, le=7 * 86400)]
"""Seconds between probes: at least 1, at most a week."""
Label = Annotated[str, Field(max_length=256)]


class ConfigError(Exception):
    """A configuration problem, worded for the person who wrote the file."""


class _Model(BaseModel):
    # No .inf or .nan anywhere: bounds cannot hold for NaN, and inf overflows timers.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TlsSettings(_Model):
    ca_bundle: Path | None = None
    """PEM file of trusted roots; default: the system trust store."""

    @field_validator("ca_bundle")
    @classmethod
    def _loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_ca_bundle(value)
        return value


class Timeouts(_Model):
    """Hard deadlines in seconds, per step and for the whole probe."""

    dns: Seconds = 5.0
    tcp_connect: Seconds = 5.0
    tls_handshake: Seconds = 5.0
    http_request: Seconds = 10.0
    throughput: Seconds = 15.0
    total: Seconds = 40.0
    helper: Seconds = 15.0
    """Asking the test helpers for the control, failover included; then the verdict goes on without it."""


class ProbeSettings(_Model):
    timeouts: Timeouts = Timeouts()
    user_agent: Annotated[str, Field(min_length=1, max_length=512)] = (
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    )
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    """The HTTP body is read up to this many bytes; its length and hash cover what was read."""
    throughput_max_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024 * 1024)] = 8 * 1024 * 1024
    throughput_max_seconds: Seconds = 10.0
    throughput_sample_interval: Annotated[float, Field(ge=0.01, le=10)] = 0.25
    max_addresses: Annotated[int, Field(ge=1, le=16)] = 4
    """Connect to at most this many resolved addresses (OONI connects to every one)."""
    idle_reset_wait: Annotated[float, Field(ge=0, le=10)] = 1.0
    """After a reset during TLS/HTTP: how long an idle connection is watched for a reset."""

    @field_validator("user_agent")
    @classmethod
    def _header_value(cls, value: str) -> str:
        # Sent as an HTTP header by h11: printable ASCII, no surrounding space, or every probe fails.
        if value != value.strip() or not all(" " <= c <= "~" for c in value):
            raise ValueError("expected printable ASCII without leading or trailing spaces")
        return value


class Helper(_Model):
    """A test helper (OONI's Web Connectivity TH protocol: `curfew helper`, or OONI's own)."""

    url: str
    """The helper's endpoint, http:// or https:// (e.g. https://th.example.org/)."""
    token_file: Path | None = None
    """A file holding the bearer token the helper asks for (read at start-up)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value, ("http", "https"), "an http:// or https:// URL with a host", False)
        return value

    @field_validator("token_file")
    @classmethod
    def _token(cls, value: Path | None) -> Path | None:
        if value is not None and path_kind(value) != "file":
            raise ValueError(f"file not found: {value}")
        return value


class Vantage(_Model):
    name: Name
    timezone: str = "UTC"
    """IANA zone of the vantage, used for hour-of-day analysis."""
    source_address: str | None = None
    """Bind outgoing TCP and UDP to this address."""
    resolver: str = "system"
    """"system" (getaddrinfo), "ip[:port]" (UDP with TCP fallback) or an https:// DoH URL."""
    proxy: str | None = None
    """http:// or socks5:// proxy; DNS then happens at the proxy."""
    control: bool = False
    """True for a vantage outside censorship, used as the comparison."""
    helpers: list[Helper] | None = None
    """Test helpers for this vantage, instead of the top-level `helpers` ([] for none)."""
    labels: dict[Label, Label] = {}
    probe_cc: str | None = None
    """Country of the vantage's network, ISO 3166 alpha-2 (KZ): OONI's probe_cc on export."""
    probe_asn: str | None = None
    """Autonomous system of the vantage's network, "AS" and its number (AS9198): OONI's probe_asn."""
    probe_network_name: Label | None = None
    """The network's name (JSC Kazakhtelecom): OONI's probe_network_name."""

    @field_validator("probe_cc")
    @classmethod
    def _probe_cc(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError(f"expected a two-letter country code (KZ), got {value!r}")
        return value.upper() if value is not None else None

    @field_validator("probe_asn")
    @classmethod
    def _probe_asn(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"AS[0-9]{1,10}", value.upper()):
            raise ValueError(f'expected "AS" and the AS number (AS9198), got {value!r}')
        return value.upper() if value is not None else None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("source_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"expected an IP address, got {value!r}") from None
        return value

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, value: str) -> str:
        parse_resolver(value)
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # The message never quotes the URL: it may hold a password.
        check_url(value, ("http", "socks5", "socks5h"), "http://host:port or socks5://host:port", True)
        return value


class Target(_Model):
    name: Name
    url: str
    throughput_url: str | None = None
    """A bulk object to download for throttling checks."""
    control: bool = False
    """A control target: not expected to be blocked; vouches for the vantage."""
    interval: Interval | None = None
    labels: dict[Label, Label] = {}

    @field_validator("url", "throughput_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_url(value, ("http", "https"), "an http:// or https:// URL with a host", False)
        return value


class MetricsSettings(_Model):
    listen: str = "127.0.0.1:9716"
    """host:port of the Prometheus endpoint (/metrics); loopback by default."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"expected host:port, got {value!r}")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"expected an IP address before the port, got {host!r}") from None
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def _default_data_dir() -> Path:
    # systemd's StateDirectory= sets STATE_DIRECTORY; elsewhere ./data beside the config user.
    return Path(os.environ.get("STATE_DIRECTORY", "data").split(":")[0])


class Config(_Model):
    tls: TlsSettings = TlsSettings()
    probe: ProbeSettings = ProbeSettings()
    interval: Interval = 300.0
    """Default seconds between probes of one (vantage, target)."""
    confirm_interval: Annotated[float, Field(ge=1, le=86400)] = 30.0
    """After a change of verdict, re-probe this often until the new state is confirmed."""
    confirm_count: Annotated[int, Field(ge=1, le=100)] = 2
    """How many times in a row a new state must be seen before it counts as confirmed."""
    max_concurrency: Annotated[int, Field(ge=1, le=10000)] = 64
    """Probes in flight at once, across every vantage."""
    grace_period: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """On SIGTERM: seconds to let in-flight probes finish before they are cancelled."""
    data_dir: Path = Field(default_factory=_default_data_dir)
    """Where the embedded database and the spool live."""

    @field_validator("data_dir")
    @classmethod
    def _directory(cls, value: Path) -> Path:
        # Whether it can be created and written is `curfew check`'s (probe.preflight): the
        # daemon re-reads this file on SIGHUP and must not fail it for its own directory.
        if path_kind(value) not in ("directory", "missing"):
            raise ValueError(f"{value} exists and is not a directory")
        return value

    database: str | None = None
    """SQLAlchemy URL: sqlite:///path or postgresql://user:pass@host/db (default: SQLite in data_dir)."""
    retention_days: Annotated[float, Field(ge=0, le=36500)] = 0
    """Delete measurements older than this many days; 0 keeps everything."""
    metrics: MetricsSettings = MetricsSettings()
    helpers: list[Helper] = []
    """Test helpers asked for the control, in order (the next one when one fails). Used when
    no vantage is `control: true`: then the helper is the control."""

    @field_validator("database")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_database_url(value)
        return value

    @property
    def episode_min_span(self) -> float:
        """Seconds a run of dark verdicts must span before it is an episode: the confirmation
        re-probes' own span, so two lost probes seconds apart never make one."""
        return self.confirm_interval * self.confirm_count

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.data_dir / 'curfew.db'}"

    vantages: Annotated[list[Vantage], Field(min_length=1)]
    targets: Annotated[list[Target], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> Config:
        for kind, items in (("vantages", self.vantages), ("targets", self.targets)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{kind}: duplicate name {item.name!r}")
                seen.add(item.name)
        return self

    def vantage(self, name: str) -> Vantage:
        return next(v for v in self.vantages if v.name == name)

    def helpers_for(self, vantage: Vantage) -> list[Helper]:
        """The helpers that give `vantage` its control: none when a control vantage is
        configured (it is the control) or for a control vantage itself."""
        if vantage.control or any(v.control for v in self.vantages):
            return []
        return list(vantage.helpers if vantage.helpers is not None else self.helpers)

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)


RESTART_ONLY: frozenset[str] = frozenset({"database", "data_dir"})
"""Top-level keys that SIGHUP does not change: the journal's directory and the database are
opened once, locked and migrated at start. A reload that changes one logs
``event=reload-key-refused key=NAME`` and keeps the running value; restart to change it.
Every other key takes effect on SIGHUP (docs/configuration.md has the table)."""
RELOADABLE: frozenset[str] = frozenset(
    {
        "tls",
        "probe",
        "interval",
        "confirm_interval",
        "confirm_count",
        "max_concurrency",
        "grace_period",
        "retention_days",
        "metrics",
        "vantages",
        "targets",
        "helpers",  # the prober's helper clients are rebuilt (asks in flight finish on the old ones)
    }
)


@dataclass
class Reload:
    """What a reload does: the config to run (`refused` keys kept at their running values) and
    the top-level keys that changed and take effect (`applied`)."""

    config: Config
    applied: list[str]
    refused: list[str]


def reload_changes(running: Config, new: Config) -> Reload:
    """Compare the running config with a newly loaded one, key by key.

    >>> base = parse_config({"vantages": [{"name": "v"}], "targets": [{"name": "t", "url": "https://x/"}]})
    >>> r = reload_changes(base, base.model_copy(update={"interval": 60.0, "database": "sqlite:///o.db"}))
    >>> r.applied, r.refused, r.config.database is None, r.config.interval
    (['interval'], ['database'], True, 60.0)
    """
    changed = [key for key in type(new).model_fields if getattr(running, key) != getattr(new, key)]
    refused = [key for key in changed if key in RESTART_ONLY]
    kept = new.model_copy(update={key: getattr(running, key) for key in refused}) if refused else new
    return Reload(kept, [key for key in changed if key not in RESTART_ONLY], refused)


Resolver = tuple[Literal["system"], None, None] | tuple[Literal["udp", "doh"], str, int]


def parse_resolver(value: str) -> tuple[str, str | None, int | None]:
    """Parse a resolver setting into (kind, host, port).

    >>> parse_resolver("127.0.0.1:5053")
    ('udp', '127.0.0.1', 5053)
    >>> parse_resolver("system")
    ('system', None, None)
    """
    if value == "system":
        return ("system", None, None)
    if value.startswith("https://"):
        check_url(value, ("https",), "an https:// DoH URL with a host", False)
        return ("doh", value, urlsplit(value).port or 443)
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"))
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = _port(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        shown = redaction.redact_url(value)  # "HTTPS://user:password@..." lands here
        raise ValueError(f'expected "system", "ip[:port]" or an https:// DoH URL, got {shown!r}') from None
    return ("udp", host, port)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate already-parsed YAML data; raise ConfigError naming `source` and the key.

    The passwords of its URLs are remembered, so that no later log line or message shows them.
    """
    config = validate(Config, data, source, ConfigError)
    helpers = config.helpers + [h for v in config.vantages for h in v.helpers or []]
    redaction.remember(
        [config.database]
        + [url for v in config.vantages for url in (v.proxy, v.resolver)]
        + [url for t in config.targets for url in (t.url, t.throughput_url)]
        + [h.url for h in helpers]
    )
    redaction.remember_secrets(_tokens(h.token_file for h in helpers if h.token_file is not None))
    return config


def _tokens(paths: Iterable[Path]) -> list[str]:
    """The helpers' bearer tokens, to keep out of the log (a file that cannot be read has none
    to leak; the helper client says why it cannot use it)."""
    tokens = []
    for path in paths:
        with contextlib.suppress(OSError, UnicodeError):
            tokens.append(path.read_text(encoding="utf-8").strip())
    return tokens


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    return parse_config(read_yaml(path, ConfigError), str(path))
