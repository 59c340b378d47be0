"""Judging a stored measurement again, from its `observations` JSON alone.

Every stored measurement keeps the control it was judged with (`ControlRecord`, see
`probe.store.mapping.control_dict`): a helper's THResponse as it came, a control vantage's
measurement (by uid: its own row; inline when that row is not what was seen), and the uids
of the control targets (and, for a control vantage's own verdict, of its peers). `rejudge`
rebuilds those into the inputs `analyze` had and runs it again, so a new analysis can be
applied to old data and an old verdict can be checked.

Pure: JSON in, an `Analysis` out. A control target or peer missing from `lookup` (deleted by
retention) is left out, which can change the verdict; everything else is what the probe saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from probe.analysis.control_vantage import analyze_control_vantage
from probe.analysis.fingerprints import Fingerprints
from probe.analysis.helper_answer import helper_control
from probe.analysis.verdict import analyze
from probe.model import (
    Analysis,
    Certificate,
    ControlRecord,
    DnsObservation,
    HttpObservation,
    Measurement,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
)

Observations = Mapping[str, Any]


def _pairs(items: Any) -> tuple[tuple[Any, Any], ...]:
    return tuple((a, b) for a, b in items or ())


def measurement_from_dict(d: Observations) -> Measurement:
    """The `Measurement` back from `Measurement.to_dict()` (or the stored `observations`).

    `started_at` is kept to the second, as stored; keys this version does not know are ignored.
    """
    dns = d.get("dns")
    http = d.get("http")
    throughput = d.get("throughput")
    return Measurement(
        vantage=d["vantage"],
        target=d["target"],
        url=d["url"],
        started_at=datetime.strptime(d["started_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC),
        runtime=float(d.get("runtime") or 0.0),
        dns=None if dns is None else DnsObservation(**{**dns, "answers": tuple(dns.get("answers") or ())}),
        tcp=tuple(TcpObservation(**o) for o in d.get("tcp") or ()),
        tls=tuple(
            TlsObservation(**{**o, "peer_chain": tuple(Certificate(**c) for c in o.get("peer_chain") or ())})
            for o in d.get("tls") or ()
        ),
        http=None if http is None else HttpObservation(**{**http, "headers": _pairs(http.get("headers"))}),
        throughput=None
        if throughput is None
        else ThroughputObservation(
            **{k: v for k, v in throughput.items() if k != "bps"}
            | {"samples": _pairs(throughput.get("samples"))}
        ),
        proxy=d.get("proxy"),
        deadline_hit=bool(d.get("deadline_hit")),
        labels=dict(d.get("labels") or {}),
        uid=d["uid"],
    )


def rejudge(
    observations: Observations,
    lookup: Mapping[str, Observations],
    fingerprints: Fingerprints | None = None,
) -> Analysis:
    """The verdict for a stored measurement, judged again with what it was judged with.

    `lookup`: stored observations by uid, for the control targets and peers the record names.
    A row stored before controls were recorded (no ``x_control``) is judged without any.
    """
    m = measurement_from_dict(observations)
    x = observations.get("x_control") or {}
    controls = [measurement_from_dict(lookup[u]) for u in x.get("controls", ()) if u in lookup]
    if x.get("role") == "control_vantage":
        peers = [measurement_from_dict(lookup[u]) for u in x.get("peers", ()) if u in lookup]
        return analyze_control_vantage(m, controls=controls, peers=peers)
    source = x.get("source") or ""
    reference: Measurement | None = None
    if source.startswith("vantage:") and x.get("measurement") is not None:
        reference = measurement_from_dict(x["measurement"])
    elif source.startswith("vantage:") and x.get("uid") in lookup:
        reference = measurement_from_dict(lookup[x["uid"]])
    elif source.startswith("helper:"):
        reference = helper_control(ControlRecord(source=source, response=observations.get("control")), m)
    return analyze(m, controls=controls, control_vantage=reference, fingerprints=fingerprints)
