"""A test helper's stored answer as the control `Measurement` the analysis compares with.

Pure (no socket, no clock): shared by the live path (`probe.control.from_helper`) and by
`probe.analysis.replay`, so a verdict judged again from stored data sees the same control.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import urlsplit

from probe.helper.control import control_measurement
from probe.helper.protocol import THResponse
from probe.model import ControlRecord, Measurement, TlsObservation


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
