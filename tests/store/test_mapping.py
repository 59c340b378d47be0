"""The mapping from results to rows and spool lines, without a database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from probe.model import Result
from probe.store.mapping import encode, line_row, measurement_dict, result_row, spool_line, without_userinfo
from tests.store.builders import T0, result


@pytest.mark.parametrize(
    "started_at",
    [T0, datetime(2019, 6, 9, 5, 0, 1, 250_000, tzinfo=UTC), datetime(2024, 3, 1, 23, 59, 59)],
)
@pytest.mark.parametrize("verdict", ["ok", "tls_blocked"])
def test_measurement_dict_encodes_like_to_dict(verdict: str, started_at: datetime) -> None:
    m = replace(result(verdict).measurement, started_at=started_at)
    assert orjson.loads(orjson.dumps(measurement_dict(m))) == json.loads(json.dumps(m.to_dict()))


def test_body_sample_is_kept_only_as_evidence() -> None:
    ok, blockpage = result(), result("http_blocked")
    blockpage = replace(blockpage, measurement=ok.measurement)  # a page that got through, judged a blockpage
    assert ok.measurement.http is not None and ok.measurement.http.body_sample
    ok_row, blocked_row = result_row(ok), result_row(blockpage)
    assert json.loads(ok_row["observations"])["http"]["body_sample"] is None
    assert json.loads(ok_row["observations"])["http"]["body_sha256"] == ok.measurement.http.body_sha256
    expected = json.loads(json.dumps(ok.measurement.to_dict()))
    assert json.loads(blocked_row["observations"]) == expected
    assert json.loads(ok_row["observations"]) == expected | {"http": expected["http"] | {"body_sample": None}}


def test_row_breaks_out_phases_throughput_issuer_and_status() -> None:
    row = result_row(result())
    assert row["dns_s"] == pytest.approx(0.021)
    assert row["tcp_connect_s"] == pytest.approx(0.040)
    assert row["tls_handshake_s"] == pytest.approx(0.081)
    assert row["http_first_byte_s"] == pytest.approx(0.09)
    assert row["http_total_s"] == pytest.approx(0.338)
    assert row["throughput_bps"] == pytest.approx(8 * 200_000 * 39 / (0.25 * 39))
    assert row["tls_issuer"].startswith("C=US, O=DigiCert")
    assert row["http_status"] == 200
    assert row["verdict"] == "ok" and row["operation"] is None


def test_blocked_row_has_no_phases_past_the_failure() -> None:
    row = result_row(result("tls_blocked"))
    assert row["tls_handshake_s"] is None and row["http_total_s"] is None and row["http_status"] is None
    assert (row["verdict"], row["operation"], row["failure"], row["blocking"]) == (
        "tls_blocked",
        "tls_handshake",
        "connection_reset",
        "tls",
    )


def test_spool_line_round_trips() -> None:
    row = result_row(result())
    line = spool_line(row)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = line_row(line)
    assert back == row
    blocked = result("tls_blocked")
    blocked_back = line_row(spool_line(result_row(blocked)))
    assert json.loads(blocked_back["observations"]) == json.loads(json.dumps(blocked.measurement.to_dict()))
    assert spool_line(back) == line  # a replayed row spools identically


@pytest.mark.parametrize("verdict", ["ok", "tls_blocked", "http_blocked"])
def test_encode_gives_the_row_and_its_spool_line(verdict: str) -> None:
    """What `submit` journals is what a replay of that line writes."""
    row, line = encode(result(verdict), ZoneInfo("Asia/Almaty"))
    assert row["local_day"] is not None
    assert line == spool_line(row)
    assert line_row(line) == row


@pytest.mark.parametrize("cut", [10, 200, -1])
def test_torn_line_is_refused(cut: int) -> None:
    line = spool_line(result_row(result()))
    with pytest.raises(ValueError):
        line_row(line[:cut])


def test_a_line_of_something_else_is_refused() -> None:
    with pytest.raises(ValueError):
        line_row(b'{"hello":"world"}\t{}\t{}\n')


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("socks5://alice:s3cret@203.0.113.7:1080", "socks5://203.0.113.7:1080"),
        ("http://user@[2001:db8::1]:3128", "http://[2001:db8::1]:3128"),
        ("http://proxy.example:3128", "http://proxy.example:3128"),
        (None, None),
    ],
)
def test_proxy_credentials_are_removed(url: str | None, expected: str | None) -> None:
    assert without_userinfo(url) == expected


def poisoned(of: Result | None = None, **changes: object) -> bytes:
    """A spool line of a real result with some scalar columns replaced (valid JSON all along)."""
    scalars, observations, analysis = spool_line(result_row(of or result())).split(b"\t")
    return b"\t".join([orjson.dumps({**orjson.loads(scalars), **changes}), observations, analysis])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"started_at": 12345}, "started_at is int"),
        ({"started_at": "yesterday"}, "started_at is not a time"),
        ({"started_at": "2019-06-09T05:00:00"}, "no UTC offset"),
        ({"uid": {"a": 1}}, "uid is dict"),
        ({"uid": "x" * 33}, "uid is longer than 32"),
        ({"uid": None}, "uid is missing"),
        ({"vantage": ["kz"]}, "vantage is list"),
        ({"verdict": "nul\u0000"}, "NUL"),
        ({"runtime_s": "fast"}, "runtime_s is str"),
        ({"runtime_s": True}, "runtime_s is bool"),
        ({"http_status": 2**63}, "http_status is out of range"),
        ({"http_status": 200.5}, "http_status is float"),
        ({"local_hour": "7"}, "local_hour is str"),
    ],
)
def test_a_wrongly_typed_line_is_refused_saying_which_column(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        line_row(poisoned(**changes))


@pytest.mark.parametrize(
    ("observations", "analysis", "reason"),
    [
        (b'{"vantage": "kz', b"{}", "observations are not JSON"),
        (b"[1, 2]", b"{}", "observations are not a JSON object"),
        (b"{}", b"null", "analysis are not a JSON object"),
    ],
)
def test_corrupt_observation_json_is_refused(observations: bytes, analysis: bytes, reason: str) -> None:
    scalars = spool_line(result_row(result())).split(b"\t")[0]
    with pytest.raises(ValueError, match=reason):
        line_row(b"\t".join([scalars, observations, analysis + b"\n"]))


def test_a_line_names_its_uid_when_it_can() -> None:
    from probe.store.mapping import line_uid

    r = result()
    assert line_uid(poisoned(r, started_at=12345)) == r.measurement.uid
    assert line_uid(b"garbage\tmore\n") is None
    assert line_uid(poisoned(r, uid={"a": 1})) == r.measurement.uid  # the observations carry it too
