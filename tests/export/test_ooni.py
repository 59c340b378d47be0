"""`curfew export --ooni`: stored measurements come back out in OONI's measurement format."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from probe.commands import export as export_command
from probe.config import parse_config
from probe.export.ooni import export, ooni_record
from probe.store import Store
from tests.store.builders import T0, result

OONI_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
URL = "https://www.facebook.com/"


async def _store(db: str, tmp: Path) -> list[Any]:
    config = parse_config(
        {
            "vantages": [
                {"name": "kz-kazakhtelecom", "labels": {"asn": "9198", "cc": "kz"}},
                {"name": "unlabelled"},
            ],
            "targets": [{"name": "facebook", "url": URL}],
        }
    )
    stored = [
        result("ok", started_at=T0),
        result("tls_blocked", started_at=T0 + timedelta(minutes=5)),
        result("ok", vantage="unlabelled", started_at=T0 + timedelta(minutes=10)),
    ]
    store = await Store.open(db, tmp / "spool")
    try:
        await store.sync_inventory(config)
        for r in stored:
            store.submit(r)
    finally:
        await store.close()
    return stored


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, list[Any]]:
    url = f"sqlite:///{tmp_path / 'curfew.db'}"
    return url, asyncio.run(_store(url, tmp_path))


def exported(url: str, **filters: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    count = asyncio.run(export(url, out, **filters))
    lines = out.getvalue().splitlines()
    assert count == len(lines)
    return [json.loads(line) for line in lines]


def test_every_stored_measurement_round_trips_in_time_order(db: tuple[str, list[Any]]) -> None:
    url, stored = db
    records = exported(url)
    assert [r["measurement_uid"] for r in records] == [s.measurement.uid for s in stored]
    for record, s in zip(records, stored, strict=True):
        assert record["measurement_start_time"] == s.measurement.started_at.strftime("%Y-%m-%d %H:%M:%S")
        assert OONI_TIME.match(record["measurement_start_time"])
        assert record["test_start_time"] == record["measurement_start_time"]
        assert record["input"] == URL
        assert record["test_name"] == "web_connectivity"
        assert record["software_name"] == "curfew"
        assert record["software_version"]
        assert record["data_format_version"] == "0.2.0"
        assert record["test_runtime"] == pytest.approx(s.measurement.runtime)
        assert record["test_keys"]["curfew"]["verdict"] == s.analysis.verdict


def test_probe_asn_and_cc_come_from_the_vantage_labels(db: tuple[str, list[Any]]) -> None:
    url, _ = db
    records = exported(url)
    assert (records[0]["probe_asn"], records[0]["probe_cc"]) == ("AS9198", "KZ")
    assert (records[2]["probe_asn"], records[2]["probe_cc"]) == ("AS0", "ZZ")


def test_test_keys_follow_web_connectivity(db: tuple[str, list[Any]]) -> None:
    url, _ = db
    ok, blocked, _ = exported(url)
    keys = ok["test_keys"]
    assert [(q["query_type"], q["failure"]) for q in keys["queries"]] == [("A", None), ("AAAA", None)]
    assert keys["queries"][0]["answers"] == [{"answer_type": "A", "ipv4": "157.240.0.35", "ttl": None}]
    assert keys["queries"][0]["resolver_address"] == "192.0.2.53"
    assert [c["status"]["success"] for c in keys["tcp_connect"]] == [True, True]
    assert keys["tcp_connect"][0]["ip"] == "157.240.0.35" and keys["tcp_connect"][0]["port"] == 443
    assert keys["tls_handshakes"][0]["address"] == "157.240.0.35:443"
    assert keys["tls_handshakes"][0]["tls_version"] == "TLSv1.3"
    assert keys["tls_handshakes"][0]["failure"] is None
    assert keys["requests"][0]["request"]["url"] == URL
    assert keys["requests"][0]["response"]["code"] == 200
    assert keys["requests"][0]["response"]["body"] is None  # stored only as evidence of a block
    assert keys["blocking"] is False and keys["accessible"] is True

    keys = blocked["test_keys"]
    assert [h["failure"] for h in keys["tls_handshakes"]] == ["connection_reset", "connection_reset"]
    assert keys["requests"] == []
    assert keys["blocking"] == "tls" and keys["accessible"] is False
    assert keys["curfew"]["failure"] == "connection_reset"
    assert keys["curfew"]["operation"] == "tls_handshake"


def test_filters_by_time_vantage_and_target(db: tuple[str, list[Any]]) -> None:
    url, stored = db
    uids = [s.measurement.uid for s in stored]
    window = exported(url, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=10))
    assert [r["measurement_uid"] for r in window] == uids[1:2]
    assert [r["measurement_uid"] for r in exported(url, vantage="unlabelled")] == uids[2:]
    assert exported(url, target="youtube") == []


def test_a_row_needs_no_database_to_convert() -> None:
    r = result("ok")
    row = {
        "uid": "u1",
        "started_at": "2019-06-09 05:00:00.123456",
        "vantage": "v",
        "target": "facebook",
        "url": URL,
        "runtime_s": 1.5,
        "observations": json.dumps(r.measurement.to_dict()),
        "analysis": {"verdict": "ok", "accessible": True},
    }
    record = ooni_record(row, {"asn": "AS65000"})
    assert record["measurement_start_time"] == "2019-06-09 05:00:00"
    assert (record["probe_asn"], record["probe_cc"]) == ("AS65000", "ZZ")


def test_the_command_writes_json_lines(db: tuple[str, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    url, stored = db
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    args = parser.parse_args(["export", "--ooni", "--db", url, "--vantage", "kz-kazakhtelecom"])
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["measurement_uid"] for line in out.splitlines()] == [
        s.measurement.uid for s in stored[:2]
    ]
    assert "2 measurements exported" in err
