"""The measurement as data: one frozen record per network step, and the whole measurement.

Every step yields an observation whether it succeeds or not; a network failure is a
`failure` string from the OONI list (see `probe.failures`), never an exception.
Times `t0`/`t` are seconds since the measurement started, read from a monotonic clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from probe.uid import new_uid

Operation = Literal["dns", "tcp_connect", "tls_handshake", "http_request", "throughput"]
Phase = Literal["dns", "tcp_connect", "tls_handshake", "http_first_byte", "http_total"]
Verdict = Literal[
    "ok",
    "dns_blocked",
    "tcp_blocked",
    "tls_blocked",
    "tls_mitm",
    "http_blocked",
    "throttled",
    "vantage_down",
    "target_down",
    "inconclusive",
]
# The same sets as values, in the order above (label sets for metrics, SQL checks, tables).
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
PHASES: tuple[Phase, ...] = get_args(Phase)
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

Blocking = Literal["dns", "tcp_ip", "tls", "http-diff", "http-failure", "throttling"]
"""Where the analysis places the blocking, in OONI's web_connectivity vocabulary."""

DnsEngine = Literal["system", "udp", "tcp", "doh", "proxy", "helper"]
"""How the name was resolved; "helper" is a test helper's resolution, recorded in its control."""


@dataclass(frozen=True)
class DnsObservation:
    """One name resolution (A and AAAA together). `answers` are IP address strings."""

    query: str
    resolver: str
    engine: DnsEngine
    t0: float
    t: float
    answers: tuple[str, ...] = ()
    failure: str | None = None


@dataclass(frozen=True)
class TcpObservation:
    """One TCP connect to one address.

    `idle_reset` is set by the follow-up check run when the TLS or HTTP step was reset: an
    idle connection (nothing sent) reset by the network means the block keys on the
    address, not on what the client said.
    """

    address: str
    port: int
    t0: float
    t: float
    failure: str | None = None
    idle_reset: bool | None = None


@dataclass(frozen=True)
class Certificate:
    """One certificate of a peer's chain. `der` is the certificate itself (base64 DER, as OONI's
    peer_certificates carry it), kept where it is evidence: a chain that did not validate."""

    subject: str
    issuer: str
    sha256: str
    not_before: str | None = None
    not_after: str | None = None
    der: str | None = None


@dataclass(frozen=True)
class TlsObservation:
    """A TLS handshake with SNI on one address.

    The handshake itself never validates (so an intercepting chain is still recorded);
    `valid` says whether the received chain validates for `server_name` against the
    trust store, and `validation_failure` names the OONI ssl_* failure when it does not.
    """

    address: str
    port: int
    server_name: str
    t0: float
    t: float
    failure: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    peer_chain: tuple[Certificate, ...] = ()
    valid: bool | None = None
    validation_failure: str | None = None

    @property
    def issuer(self) -> str | None:
        return self.peer_chain[0].issuer if self.peer_chain else None


@dataclass(frozen=True)
class HttpObservation:
    """An HTTP/1.1 GET. `ttfb` is seconds from sending the request to the first response byte."""

    url: str
    address: str | None
    t0: float
    t: float
    failure: str | None = None
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    title: str | None = None
    body_length: int | None = None
    body_sha256: str | None = None
    body_truncated: bool = False
    ttfb: float | None = None
    body_sample: str | None = None  # the first bytes of the body as text, for blockpage fingerprints

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


@dataclass(frozen=True)
class ThroughputObservation:
    """A bulk download sampled as (seconds since the request, cumulative bytes off the socket)."""

    url: str
    t0: float
    t: float
    failure: str | None = None
    bytes: int = 0
    samples: tuple[tuple[float, int], ...] = ()
    complete: bool = False

    @property
    def bps(self) -> float | None:
        """Rate in bits per second from the first byte's arrival to the last sample.

        Starting at the first byte keeps the request's round trip out of the rate, so a
        policer's flat rate reads as itself. None if too little was received to tell.
        """
        if len(self.samples) >= 2:
            (t_first, b_first), (t_last, b_last) = self.samples[0], self.samples[-1]
            if t_last > t_first and b_last > b_first:
                return (b_last - b_first) * 8 / (t_last - t_first)
        duration = self.t - self.t0
        if self.bytes <= 0 or duration <= 0:
            return None
        return self.bytes * 8 / duration


@dataclass(frozen=True)
class Measurement:
    """Everything one probe of one (vantage, target) saw."""

    vantage: str
    target: str
    url: str
    started_at: datetime  # UTC
    runtime: float
    dns: DnsObservation | None = None
    tcp: tuple[TcpObservation, ...] = ()
    tls: tuple[TlsObservation, ...] = ()
    http: HttpObservation | None = None
    throughput: ThroughputObservation | None = None
    proxy: str | None = None  # scheme://host:port of the proxy, credentials removed
    deadline_hit: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=new_uid)
    """Unique id (OONI's measurement_uid role): lets the store write each one exactly once.
    Time-ordered (a v7 UUID, see `probe.uid`), so the database's index on it stays cheap."""

    @property
    def tls_issuer(self) -> str | None:
        for obs in self.tls:
            if obs.peer_chain:
                return obs.issuer
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.strftime("%Y-%m-%d %H:%M:%S")
        if self.throughput is not None:
            data["throughput"]["bps"] = self.throughput.bps
        return data


@dataclass(frozen=True)
class Analysis:
    """The verdict on one measurement and the evidence behind it.

    `operation`/`failure` name the step judged to be where blocking (or breakage) happened;
    `failure` is None when that step "succeeded" but was judged blocked (a blockpage, a
    throttled but complete download). `blocking` uses OONI's flag values.
    """

    verdict: Verdict
    operation: Operation | None
    failure: str | None
    reason: str
    blocking: Blocking | None = None
    accessible: bool | None = None
    dns_consistency: str | None = None
    http_diff: bool | None = None
    fingerprint: str | None = None
    throughput_ratio: float | None = None


@dataclass(frozen=True)
class ControlRecord:
    """The comparison a measurement was judged with, stored beside it so the verdict can be
    judged again from stored data (`probe.analysis.replay`) and exported (OONI's `control`).

    `source`: ``"vantage:NAME"`` (a control vantage in the same process) or ``"helper:URL"``
    (a test helper), None when there was no control to ask. `response`: the control's answer
    in OONI's THResponse JSON shape (a helper's as it came; a control vantage's made from its
    measurement). `failure`: why a helper gave no answer (the verdict then fell back to what
    the vantage alone can say). `measurement`: a control vantage's own measurement as judged
    with (richer than its THResponse: TLS chains, curfew's failure strings, a proxy's view),
    kept inline only when its own stored row (`uid`) does not hold what the verdict saw (the
    control vantage reached this vantage's addresses after that row was stored); `uid`: the
    control vantage's measurement.
    `controls`: uids of the control targets at the same vantage; `peers`: for a control
    vantage's own verdict (`role` "control_vantage"), uids of the same target at the other
    vantages.
    """

    role: Literal["vantage", "control_vantage"] = "vantage"
    source: str | None = None
    response: dict[str, Any] | None = None
    failure: str | None = None
    measurement: Measurement | None = None
    uid: str | None = None
    controls: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    """A measurement and the analysis it was judged with: what the store, metrics and episodes take."""

    measurement: Measurement
    analysis: Analysis
    control: ControlRecord | None = None


def phase_durations(m: Measurement) -> dict[Phase, float]:
    """Seconds spent in each phase that completed (the connection HTTP used, else the first).

    >>> phase_durations(Measurement("v", "t", "u", datetime(2019, 1, 1), 0.0))
    {}
    """
    out: dict[Phase, float] = {}
    if m.dns is not None and m.dns.failure is None and m.dns.engine != "proxy":
        out["dns"] = m.dns.t - m.dns.t0
    address = m.http.address if m.http is not None else None
    tcp = None
    for o in m.tcp:  # plain loops: this runs for every measurement stored (see mapping.encode)
        if o.failure is None:
            if o.address == address:
                tcp = o
                break
            tcp = tcp or o
    if tcp is not None:
        out["tcp_connect"] = tcp.t - tcp.t0
    for h in m.tls:
        if h.failure is None and (address is None or h.address == address):
            out["tls_handshake"] = h.t - h.t0
            break
    if m.http is not None and m.http.failure is None:
        if m.http.ttfb is not None:
            out["http_first_byte"] = m.http.ttfb
        out["http_total"] = m.http.t - m.http.t0
    return out
