"""Where a measurement's control comes from, as one record: a control vantage or a test helper.

Either way the analysis gets the control as a `Measurement` (`analyze(control_vantage=...)`)
and the store gets a `ControlRecord`: the control's answer in OONI's THResponse JSON shape
(what a helper said, or what the control vantage would have said as a helper), or why there
was none. Pure: nothing here opens a socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from probe import failures as F
from probe.analysis.helper_answer import helper_control
from probe.helper.answer import HelperAnswer
from probe.helper.control import join_endpoint, th_response, url_port
from probe.model import ControlRecord, DnsObservation, Measurement

_FAILURES: Final[dict[str, str]] = {
    "timeout": F.GENERIC_TIMEOUT,
    "http_status": F.HTTP_REQUEST_FAILED,
}


def control_failure(answer: HelperAnswer) -> str | None:
    """OONI's `control_failure` for a helper exchange that gave no answer (None if it did).

    >>> from probe.helper.answer import Attempt
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
    return dns_endpoints(m.url, m.dns)


def dns_endpoints(url: str, dns: DnsObservation | None) -> list[str]:
    """The "ip:port" endpoints of `dns`'s answers on `url`'s port (none through a proxy)."""
    if dns is None or dns.failure is not None or dns.engine == "proxy":
        return []
    port = url_port(url)
    return [join_endpoint(a, port) for a in dns.answers]


def _resolved(m: Measurement) -> tuple[str, ...]:
    if m.dns is None or m.dns.failure is not None or m.dns.engine == "proxy":
        return ()
    return m.dns.answers


def from_vantage(
    control: Measurement, m: Measurement, controls: Sequence[Measurement] = (), *, inline: bool = False
) -> ControlRecord:
    """The record of `m` judged against the control vantage's measurement `control`.

    `inline`: keep `control` itself in the record, for when its own stored row is not what
    `m` was judged with; otherwise its uid names that row.
    """
    return ControlRecord(
        source=f"vantage:{control.vantage}",
        # Plain IPs rather than endpoints: th_response takes either, and skips a parse per address.
        response=th_response(control, _resolved(m)).to_json(),
        measurement=control if inline else None,
        uid=control.uid,
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


def no_control(controls: Sequence[Measurement] = ()) -> ControlRecord:
    """The record of a measurement judged without a control (a control target, or no
    control configured)."""
    return ControlRecord(controls=tuple(c.uid for c in controls))


def own_verdict(controls: Sequence[Measurement], peers: Sequence[Measurement]) -> ControlRecord:
    """The record of a control vantage's own verdict: its control targets and its peers."""
    return ControlRecord(
        role="control_vantage", controls=tuple(c.uid for c in controls), peers=tuple(p.uid for p in peers)
    )
