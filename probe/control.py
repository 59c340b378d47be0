"""Where a measurement's control comes from, as one record: a control vantage or a test helper.

Either way the analysis gets the control as a `Measurement` (`analyze(control_vantage=...)`)
and the store gets a `ControlRecord`: the control's answer in OONI's THResponse JSON shape
(what a helper said, or what the control vantage would have said as a helper), or why there
was none. Pure: nothing here opens a socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Final
from urllib.parse import urlsplit

from probe import failures as F
from probe.helper.client import HelperAnswer
from probe.helper.control import control_measurement, join_endpoint, th_response, url_port
from probe.helper.protocol import THResponse
from probe.model import ControlRecord, Measurement, TlsObservation

_FAILURES: Final[dict[str, str]] = {
    "timeout": F.GENERIC_TIMEOUT,
    "http_status": F.HTTP_REQUEST_FAILED,
}


def control_failure(answer: HelperAnswer) -> str | None:
    """OONI's `control_failure` for a helper exchange that gave no answer (None if it did).

    >>> from probe.helper.client import Attempt
    >>> control_failure(HelperAnswer(None, None, (Attempt("th", "timeout", "15 s"),)))
    'generic_timeout_error'
    >>> control_failure(HelperAnswer(None, None, (Attempt("th", "unreachable", "refused"),)))
    'unknown_failure: helper unreachable'
    """
    if answer.response is not None:
        return None
    reason = answer.reason
    if reason is None:
        return "unknown_failure: no helper configured"
    return _FAILURES.get(reason, f"unknown_failure: helper {reason}")


def endpoints(m: Measurement) -> list[str]:
    """The "ip:port" endpoints of the addresses `m` resolved, for a THRequest's `tcp_connect`.

    >>> from datetime import datetime
    >>> from probe.model import DnsObservation
    >>> dns = DnsObservation("a.example", "r", "udp", 0.0, 0.1, ("192.0.2.1", "2001:db8::1"))
    >>> endpoints(Measurement("v", "t", "https://a.example/", datetime(2019, 1, 1), 0.1, dns=dns))
    ['192.0.2.1:443', '[2001:db8::1]:443']
    """
    if m.dns is None or m.dns.failure is not None or m.dns.engine == "proxy":
        return []
    port = url_port(m.url)
    return [join_endpoint(a, port) for a in m.dns.answers]


def from_vantage(control: Measurement, m: Measurement, controls: Sequence[Measurement] = ()) -> ControlRecord:
    """The record of `m` judged against the control vantage's measurement `control`."""
    return ControlRecord(
        source=f"vantage:{control.vantage}",
        response=th_response(control, endpoints(m)).to_json(),
        measurement=control,
        controls=tuple(c.uid for c in controls),
    )


def from_helper(
    answer: HelperAnswer, m: Measurement, controls: Sequence[Measurement] = ()
) -> tuple[Measurement | None, ControlRecord]:
    """The control for `m` from a helper's answer (None when it gave none) and its record."""
    helper = answer.helper or (answer.attempts[-1].helper if answer.attempts else "none")
    record = ControlRecord(
        source=f"helper:{helper}",
        response=answer.response.to_json() if answer.response is not None else None,
        failure=control_failure(answer),
        controls=tuple(c.uid for c in controls),
    )
    return helper_control(record, m), record


def helper_control(record: ControlRecord, m: Measurement) -> Measurement | None:
    """The control `Measurement` a helper's stored answer stands for (None without one)."""
    if record.response is None:
        return None
    response = THResponse.from_json(record.response)
    control = control_measurement(
        response, m.url, vantage=record.source or "helper", target=m.target, started_at=m.started_at
    )
    return with_valid_addresses(control, response.valid_addresses())


def with_valid_addresses(control: Measurement, valid: Iterable[str]) -> Measurement:
    """`control` with a validated TLS handshake for each address the helper's `ip_info` says
    is valid for the domain (flag 8) and its handshakes do not already show.

    For an http:// URL the helper vouches for addresses with a handshake on 443 that is not
    part of the fetch (see `probe.helper.control.control_measurement`); this is how that
    reaches the DNS consistency check, which judges addresses by validated handshakes.
    """
    shown = {obs.address for obs in control.tls if obs.failure is None and obs.valid is True}
    host = control.dns.query if control.dns is not None else (urlsplit(control.url).hostname or "")
    extra = tuple(
        TlsObservation(address, 443, host, 0.0, 0.0, valid=True) for address in sorted(set(valid) - shown)
    )
    return replace(control, tls=control.tls + extra) if extra else control


def no_control(controls: Sequence[Measurement] = ()) -> ControlRecord:
    """The record of a measurement judged without a control (a control target, or no
    control configured)."""
    return ControlRecord(controls=tuple(c.uid for c in controls))


def own_verdict(controls: Sequence[Measurement], peers: Sequence[Measurement]) -> ControlRecord:
    """The record of a control vantage's own verdict: its control targets and its peers."""
    return ControlRecord(
        role="control_vantage", controls=tuple(c.uid for c in controls), peers=tuple(p.uid for p in peers)
    )
