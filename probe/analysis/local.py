"""Whether a measurement failed on the probe's own machine rather than on the network.

A probe that could not open a socket (no descriptor left, no buffer, no memory, no local
port) measured nothing about the path to the target: its failure is the daemon's, and judging
it would turn the daemon's own trouble into censorship (a "dns_blocked" from EMFILE). The
failure strings come from `probe.failures` (``local_failure: <reason>``); this module finds
them in a whole measurement. Pure: no socket, no clock.
"""

from __future__ import annotations

from probe import failures
from probe.model import Measurement, Operation


def local_failure(m: Measurement) -> tuple[Operation, str] | None:
    """The first step of `m`, in probe order, that failed on this machine, and its failure.

    Any step on any address counts: a measurement with a hole the machine made is incomplete,
    and an incomplete measurement can look like a block (one address "failed", the others were
    refused by a censor or not). None when every failure in `m` is the network's.
    """
    if m.dns is not None and failures.is_local(m.dns.failure):
        return "dns", m.dns.failure or ""
    for tcp in m.tcp:
        if failures.is_local(tcp.failure):
            return "tcp_connect", tcp.failure or ""
    for tls in m.tls:
        if failures.is_local(tls.failure):
            return "tls_handshake", tls.failure or ""
    if m.http is not None and failures.is_local(m.http.failure):
        return "http_request", m.http.failure or ""
    if m.throughput is not None and failures.is_local(m.throughput.failure):
        return "throughput", m.throughput.failure or ""
    return None
