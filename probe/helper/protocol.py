"""OONI's Web Connectivity test-helper (TH) protocol, field by field, as frozen records.

The wire format is ooni/probe-cli `internal/model/th.go` (and the control request/response of
ooni/spec `nettests/ts-017-web-connectivity.md`). What was matched, from th.go::

    type THRequest struct {
        HTTPRequest        string              `json:"http_request"`
        HTTPRequestHeaders map[string][]string `json:"http_request_headers"`
        TCPConnect         []string            `json:"tcp_connect"`
        XQUICEnabled       bool                `json:"x_quic_enabled"`
    }
    type THTCPConnectResult struct { Status bool `json:"status"`; Failure *string `json:"failure"` }
    type THTLSHandshakeResult struct {
        ServerName string `json:"server_name"`; Status bool `json:"status"`; Failure *string `json:"failure"`
    }
    type THHTTPRequestResult struct {
        BodyLength int64 `json:"body_length"`; DiscoveredH3Endpoint string `json:"discovered_h3_endpoint"`
        Failure *string `json:"failure"`; Title string `json:"title"`
        Headers map[string]string `json:"headers"`; StatusCode int64 `json:"status_code"`
    }
    type THDNSResult struct { Failure *string `json:"failure"`; Addrs []string `json:"addrs"` }
    type THIPInfo struct { ASN int64 `json:"asn"`; Flags int64 `json:"flags"` }
    THIPInfoFlagResolvedByProbe = 1, THIPInfoFlagResolvedByTH = 2,
    THIPInfoFlagIsBogon = 4, THIPInfoFlagValidForDomain = 8
    type THResponse struct {
        TCPConnect    map[string]THTCPConnectResult   `json:"tcp_connect"`
        TLSHandshake  map[string]THTLSHandshakeResult `json:"tls_handshake,omitempty"`
        QUICHandshake map[string]THTLSHandshakeResult `json:"quic_handshake"`
        HTTPRequest   THHTTPRequestResult             `json:"http_request"`
        HTTP3Request  *THHTTPRequestResult            `json:"http3_request"` // optional!
        DNS           THDNSResult                     `json:"dns"`
        IPInfo        map[string]*THIPInfo            `json:"ip_info,omitempty"`
    }

Parsing follows Go's encoding/json as the Go peers use it: unknown fields are ignored, a
missing field or a JSON null takes the zero value, and a value of the wrong type is an error
(`ProtocolError`, naming the field). Emitting follows it too: fields in declaration order,
map keys sorted, `tls_handshake` and `ip_info` left out when empty (omitempty), so an answer
from this module and one from OONI's `oohelperd` are the same bytes for the same content.

Failure strings are the TH's own, inherited from the legacy Python helper (see
`probe.helper.control` for the mapping to curfew's): DNS `dns_name_error`,
`dns_server_failure`, `unknown_error` (no answer is failure null with no addrs); TCP
`generic_timeout_error`, `connection_refused_error`, `connect_error`; HTTP `dns_lookup_error`,
`generic_timeout_error`, `connection_refused_error`, `unknown_error`, with `body_length` and
`status_code` -1; TLS uses the ordinary OONI failure strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

FLAG_RESOLVED_BY_PROBE: Final = 1
FLAG_RESOLVED_BY_TH: Final = 2
FLAG_BOGON: Final = 4
FLAG_VALID_FOR_DOMAIN: Final = 8

DNS_NAME_ERROR: Final = "dns_name_error"
"""The TH's failure for NXDOMAIN (model.THDNSNameError)."""

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class ProtocolError(ValueError):
    """A request or response that is not valid TH JSON; the message names the field."""


# --- decoding helpers: Go's encoding/json semantics (null and missing are the zero value) ---


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _fail(path: str, expected: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{path}: expected {expected}, got {_kind(value)}")


def _object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(path, "an object", value)
    return value


def _str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}" if path else key, "a string", value)
    return value


def _opt_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(f"{path}.{key}" if path else key, "a string or null", value)
    return value


def _bool(obj: Mapping[str, Any], key: str, path: str) -> bool:
    value = obj.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(f"{path}.{key}" if path else key, "a boolean", value)
    return value


def _int(obj: Mapping[str, Any], key: str, path: str) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    # bool is an int in Python, not in JSON; Go also refuses 1.5 (and 1.0) for an int64.
    if isinstance(value, bool) or not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise _fail(f"{path}.{key}" if path else key, "an integer", value)
    return value


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(path, "an array of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"{path}[{i}]", "a string", item)
    return tuple(value)


# --- the records ---


@dataclass(frozen=True)
class THRequest:
    """What a probe sends: the URL, its request headers and the endpoints ("ip:port") it resolved."""

    http_request: str
    http_request_headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tcp_connect: tuple[str, ...] = ()
    x_quic_enabled: bool = False

    @classmethod
    def from_json(cls, data: Any) -> THRequest:
        obj = _object(data, "request")
        raw_headers = _object(obj.get("http_request_headers"), "http_request_headers")
        headers = {
            name: _strings(values, f"http_request_headers.{name}") for name, values in raw_headers.items()
        }
        return cls(
            http_request=_str(obj, "http_request", ""),
            http_request_headers=headers,
            tcp_connect=_strings(obj.get("tcp_connect"), "tcp_connect"),
            x_quic_enabled=_bool(obj, "x_quic_enabled", ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "http_request": self.http_request,
            "http_request_headers": {
                k: list(self.http_request_headers[k]) for k in sorted(self.http_request_headers)
            },
            "tcp_connect": list(self.tcp_connect),
            "x_quic_enabled": self.x_quic_enabled,
        }


@dataclass(frozen=True)
class THTcpConnect:
    status: bool
    failure: str | None = None

    @classmethod
    def from_json(cls, data: Any, path: str) -> THTcpConnect:
        obj = _object(data, path)
        return cls(status=_bool(obj, "status", path), failure=_opt_str(obj, "failure", path))

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "failure": self.failure}


@dataclass(frozen=True)
class THTlsHandshake:
    """One TLS (or QUIC) handshake; `status` true means it completed with a chain valid for `server_name`."""

    server_name: str
    status: bool
    failure: str | None = None

    @classmethod
    def from_json(cls, data: Any, path: str) -> THTlsHandshake:
        obj = _object(data, path)
        return cls(
            server_name=_str(obj, "server_name", path),
            status=_bool(obj, "status", path),
            failure=_opt_str(obj, "failure", path),
        )

    def to_json(self) -> dict[str, Any]:
        return {"server_name": self.server_name, "status": self.status, "failure": self.failure}


@dataclass(frozen=True)
class THHttpRequest:
    """The helper's fetch of the URL (redirects followed). -1 for length and status on failure."""

    body_length: int = 0
    discovered_h3_endpoint: str = ""
    failure: str | None = None
    title: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    status_code: int = 0

    @classmethod
    def from_json(cls, data: Any, path: str) -> THHttpRequest:
        obj = _object(data, path)
        raw_headers = _object(obj.get("headers"), f"{path}.headers")
        headers = {}
        for name, value in raw_headers.items():
            if not isinstance(value, str):
                raise _fail(f"{path}.headers.{name}", "a string", value)
            headers[name] = value
        return cls(
            body_length=_int(obj, "body_length", path),
            discovered_h3_endpoint=_str(obj, "discovered_h3_endpoint", path),
            failure=_opt_str(obj, "failure", path),
            title=_str(obj, "title", path),
            headers=headers,
            status_code=_int(obj, "status_code", path),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "body_length": self.body_length,
            "discovered_h3_endpoint": self.discovered_h3_endpoint,
            "failure": self.failure,
            "title": self.title,
            "headers": {k: self.headers[k] for k in sorted(self.headers)},
            "status_code": self.status_code,
        }


@dataclass(frozen=True)
class THDns:
    """The helper's own resolution of the URL's host (empty when the host is an IP)."""

    failure: str | None = None
    addrs: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any, path: str) -> THDns:
        obj = _object(data, path)
        return cls(failure=_opt_str(obj, "failure", path), addrs=_strings(obj.get("addrs"), f"{path}.addrs"))

    def to_json(self) -> dict[str, Any]:
        return {"failure": self.failure, "addrs": list(self.addrs)}


@dataclass(frozen=True)
class THIpInfo:
    """What the helper knows of one address: its ASN (0 when unknown) and FLAG_* bits."""

    asn: int = 0
    flags: int = 0

    @classmethod
    def from_json(cls, data: Any, path: str) -> THIpInfo:
        obj = _object(data, path)
        return cls(asn=_int(obj, "asn", path), flags=_int(obj, "flags", path))

    def to_json(self) -> dict[str, Any]:
        return {"asn": self.asn, "flags": self.flags}


def _map(data: Any, path: str, parse: Any) -> dict[str, Any]:
    return {key: parse(value, f"{path}.{key}") for key, value in _object(data, path).items()}


def _emit(items: Mapping[str, Any]) -> dict[str, Any]:
    return {key: items[key].to_json() for key in sorted(items)}


@dataclass(frozen=True)
class THResponse:
    """What the helper answers. Endpoint keys are "ip:port" ("[v6]:port"); ip_info keys are IPs."""

    tcp_connect: Mapping[str, THTcpConnect] = field(default_factory=dict)
    tls_handshake: Mapping[str, THTlsHandshake] = field(default_factory=dict)
    quic_handshake: Mapping[str, THTlsHandshake] = field(default_factory=dict)
    http_request: THHttpRequest = field(default_factory=THHttpRequest)
    http3_request: THHttpRequest | None = None
    dns: THDns = field(default_factory=THDns)
    ip_info: Mapping[str, THIpInfo] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> THResponse:
        obj = _object(data, "response")
        h3 = obj.get("http3_request")
        return cls(
            tcp_connect=_map(obj.get("tcp_connect"), "tcp_connect", THTcpConnect.from_json),
            tls_handshake=_map(obj.get("tls_handshake"), "tls_handshake", THTlsHandshake.from_json),
            quic_handshake=_map(obj.get("quic_handshake"), "quic_handshake", THTlsHandshake.from_json),
            http_request=THHttpRequest.from_json(obj.get("http_request"), "http_request"),
            http3_request=None if h3 is None else THHttpRequest.from_json(h3, "http3_request"),
            dns=THDns.from_json(obj.get("dns"), "dns"),
            ip_info=_map(obj.get("ip_info"), "ip_info", THIpInfo.from_json),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tcp_connect": _emit(self.tcp_connect)}
        if self.tls_handshake:  # omitempty
            out["tls_handshake"] = _emit(self.tls_handshake)
        out["quic_handshake"] = _emit(self.quic_handshake)
        out["http_request"] = self.http_request.to_json()
        out["http3_request"] = None if self.http3_request is None else self.http3_request.to_json()
        out["dns"] = self.dns.to_json()
        if self.ip_info:  # omitempty
            out["ip_info"] = _emit(self.ip_info)
        return out

    def valid_addresses(self) -> frozenset[str]:
        """IPs the helper found valid for the domain: a TLS handshake with a valid chain worked."""
        return frozenset(ip for ip, info in self.ip_info.items() if info.flags & FLAG_VALID_FOR_DOMAIN)


def loads(data: bytes | str) -> Any:
    """Parse JSON text; a syntax error is a ProtocolError too."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None


def parse_request(data: bytes | str) -> THRequest:
    return THRequest.from_json(loads(data))


def parse_response(data: bytes | str) -> THResponse:
    return THResponse.from_json(loads(data))


# json.Marshal escapes these inside strings (HTML safety); outside strings they cannot occur.
_GO_ESCAPES: Final = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def dumps(record: THRequest | THResponse) -> bytes:
    """Compact JSON, byte for byte what Go's json.Marshal writes for the same record."""
    data = orjson.dumps(record.to_json())
    for raw, escaped in _GO_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data
