"""The measurement record: phase durations and the JSON shape."""

from __future__ import annotations

from datetime import UTC, datetime

from probe.model import (
    DnsObservation,
    HttpObservation,
    Measurement,
    TcpObservation,
    ThroughputObservation,
    TlsObservation,
    phase_durations,
)


def sample() -> Measurement:
    return Measurement(
        vantage="kz-almaty",
        target="facebook",
        url="https://www.facebook.com/",
        started_at=datetime(2019, 5, 20, 14, 30, tzinfo=UTC),
        runtime=0.5,
        dns=DnsObservation("www.facebook.com", "127.0.0.1:53", "udp", 0.0, 0.01, ("127.0.1.1", "127.0.1.2")),
        tcp=(
            TcpObservation("127.0.1.1", 443, 0.01, 0.05, failure="generic_timeout_error"),
            TcpObservation("127.0.1.2", 443, 0.01, 0.03),
        ),
        tls=(TlsObservation("127.0.1.2", 443, "www.facebook.com", 0.03, 0.1),),
        http=HttpObservation("https://www.facebook.com/", "127.0.1.2", 0.1, 0.3, status=200, ttfb=0.05),
        throughput=ThroughputObservation(
            "https://x/bulk", 0.3, 0.5, bytes=20000, samples=((0.1, 1000), (1.1, 19750))
        ),
    )


def test_phases_follow_the_connection_http_used() -> None:
    phases = phase_durations(sample())
    assert phases.keys() == {"dns", "tcp_connect", "tls_handshake", "http_first_byte", "http_total"}
    assert abs(phases["tcp_connect"] - 0.02) < 1e-9  # the second address, not the timed-out first
    assert abs(phases["http_total"] - 0.2) < 1e-9


def test_throughput_rate_is_measured_from_the_first_byte() -> None:
    m = sample()
    assert m.throughput is not None
    assert m.throughput.bps == (19750 - 1000) * 8 / 1.0


def test_json_shape_has_ooni_time_and_a_uid() -> None:
    data = sample().to_dict()
    assert data["started_at"] == "2019-05-20 14:30:00"
    assert len(data["uid"]) == 32
    assert data["throughput"]["bps"] == 150000.0
    assert sample().uid != sample().uid


def test_uids_are_v7_uuids_ordered_by_time() -> None:
    import uuid

    from probe.uid import new_uid

    ids = [new_uid(t * 1_000_000) for t in range(1_560_056_400_000, 1_560_056_400_000 + 50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert all(uuid.UUID(hex=u).version == 7 for u in ids)
    assert len({new_uid(0) for _ in range(1000)}) == 1000  # the same millisecond: still unique
    assert uuid.UUID(hex=sample().uid).version == 7
