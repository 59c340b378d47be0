"""`curfew helper`'s settings: the `helper:` section of its YAML file, overridden by flags.

A helper file holds `helper:` and, optionally, the `probe:` (timeouts, body cap, user agent)
and `tls:` (trust store) sections a daemon's file has, with the same meaning:

    helper:
      listen: 0.0.0.0:8443
      resolver: https://dns.google/dns-query   # what a vantage's `resolver` takes
      token_file: /etc/curfew/helper.token
      tls_cert: /etc/curfew/helper.crt
      tls_key: /etc/curfew/helper.key
      metrics_listen: 127.0.0.1:9717
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probe.config import ConfigError, ProbeSettings, TlsSettings, parse_resolver
from probe.validation import read_yaml, validate


def parse_listen(value: str) -> tuple[str, int]:
    """ "host:port" (IPv6 in brackets) -> (host, port); ValueError when malformed.

    >>> parse_listen("127.0.0.1:8080"), parse_listen("[::1]:0")
    (('127.0.0.1', 8080), ('::1', 0))
    """
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected host:port, got {value!r}")
    host = host.removeprefix("[").removesuffix("]")
    ipaddress.ip_address(host)
    return host, int(port)


def _existing(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"file not found: {value}")
    return value


class HelperSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1:8765"
    """host:port to serve the TH protocol on (POST /)."""
    resolver: str = "system"
    """How the helper resolves names: "system", "ip[:port]" or an https:// DoH URL (as a vantage's)."""
    source_address: str | None = None
    """Bind outgoing connections to this address (as a vantage's)."""
    ca_bundle: Path | None = None
    """Trust store judging the targets' chains (default: the `tls:` section's, else the system's)."""
    allow_private: bool = False
    """Measure loopback, private, link-local and other bogon targets: for the lab and tests only."""
    token_file: Path | None = None
    """When set, requests need `Authorization: Bearer <the file's content>`."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """PEM certificate chain and key: serve HTTPS (else plain HTTP, e.g. behind a proxy)."""
    metrics_listen: str | None = None
    """host:port of the helper's own Prometheus endpoint (GET /metrics); none by default."""
    max_concurrency: Annotated[int, Field(ge=1, le=4096)] = 32
    """Measurements in flight at once; beyond that a request is answered 503."""
    max_connections: Annotated[int, Field(ge=1, le=65536)] = 512
    """Open client connections at once; beyond that new ones are closed at once."""
    max_connections_per_client: Annotated[int, Field(ge=1, le=65536)] = 32
    """Open connections from one client address at once (slowloris from one machine)."""
    max_request_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 64 * 1024
    """A THRequest is a few hundred bytes; a larger body is answered 413."""
    max_addresses: Annotated[int, Field(ge=0, le=64)] = 16
    """At most this many `tcp_connect` endpoints in a request (413 beyond)."""
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 10
    """Redirects followed for the page, as Go's HTTP client (OONI's helper) does."""
    request_timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    """Deadline for one request's measurement, redirects included."""
    header_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds a client has to send a request's head (and to finish the TLS handshake)."""
    body_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds a client has to send a request's body once the head arrived."""
    rate: Annotated[float, Field(ge=0)] = 5.0
    """Requests per second allowed per client (an IPv4 address or an IPv6 /64), on average (0: no limit)."""
    burst: Annotated[int, Field(ge=1)] = 20
    """Requests a client may send at once before `rate` applies."""

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, value: str) -> str:
        parse_resolver(value)
        return value

    @field_validator("source_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("ca_bundle", "token_file", "tls_cert", "tls_key")
    @classmethod
    def _files(cls, value: Path | None) -> Path | None:
        return _existing(value)

    @model_validator(mode="after")
    def _pair(self) -> HelperSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("helper.tls_cert and helper.tls_key go together")
        return self


class HelperFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    helper: HelperSettings = HelperSettings()
    probe: ProbeSettings = ProbeSettings()
    tls: TlsSettings = TlsSettings()


def load_helper_file(path: Path | None, overrides: dict[str, Any]) -> HelperFile:
    """The file's settings (defaults without a file) with `overrides` (flags given) on top.

    Raises ConfigError naming the file (or "command line") and the key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(path, ConfigError)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = dict(loaded or {})
    section = dict(data.get("helper") or {})
    section.update(overrides)
    data["helper"] = section
    source = str(path) if path is not None else "command line"
    if overrides and path is not None:
        source = f"{path} (with the command line's flags)"
    return validate(HelperFile, data, source, ConfigError)
