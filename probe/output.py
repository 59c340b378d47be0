"""Rendering results for people (a table) and for programs (one JSON object per line)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from probe import SOFTWARE_NAME, __version__
from probe.model import Result


def result_record(result: Result) -> dict[str, Any]:
    """The JSON shape of one result: summary fields first, then every observation."""
    m, a = result.measurement, result.analysis
    throughput = m.throughput.bps if m.throughput is not None else None
    return {
        "vantage": m.vantage,
        "target": m.target,
        "url": m.url,
        "measurement_start_time": m.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "verdict": a.verdict,
        "failure": a.failure,
        "operation": a.operation,
        "reason": a.reason,
        "blocking": a.blocking,
        "accessible": a.accessible,
        "dns_consistency": a.dns_consistency,
        "http_diff": a.http_diff,
        "fingerprint": a.fingerprint,
        "throughput_ratio": a.throughput_ratio,
        "tls_issuer": m.tls_issuer,
        "throughput_bps": round(throughput) if throughput is not None else None,
        "test_runtime": round(m.runtime, 6),
        "software_name": SOFTWARE_NAME,
        "software_version": __version__,
        "observations": m.to_dict(),
        # The control the verdict was judged with (OONI's keys): a THResponse, or why none.
        "control": result.control.response if result.control is not None else None,
        "control_failure": result.control.failure if result.control is not None else None,
    }


def to_json_lines(results: Sequence[Result]) -> str:
    return "".join(json.dumps(result_record(r), sort_keys=False) + "\n" for r in results)


def _ms(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start) * 1000:.0f}"


def _timings(result: Result) -> tuple[str, str, str, str]:
    m = result.measurement
    dns = _ms(m.dns.t0, m.dns.t) if m.dns is not None and m.dns.engine != "proxy" else "-"
    tcp = next((_ms(o.t0, o.t) for o in m.tcp if o.failure is None), "-")
    tls = next((_ms(o.t0, o.t) for o in m.tls if o.failure is None), "-")
    http = _ms(m.http.t0, m.http.t) if m.http is not None and m.http.failure is None else "-"
    return dns, tcp, tls, http


def to_table(results: Sequence[Result]) -> str:
    """A fixed-width table: vantage, target, verdict, failing step, failure, step timings in ms."""
    header = ("VANTAGE", "TARGET", "VERDICT", "STEP", "FAILURE", "DNS", "TCP", "TLS", "HTTP", "KBIT/S")
    rows = [header]
    for r in sorted(results, key=lambda r: (r.measurement.vantage, r.measurement.target)):
        bps = r.measurement.throughput.bps if r.measurement.throughput is not None else None
        rows.append(
            (
                r.measurement.vantage,
                r.measurement.target,
                r.analysis.verdict,
                r.analysis.operation or "-",
                r.analysis.failure or "-",
                *_timings(r),
                f"{bps / 1000:.0f}" if bps is not None else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"
