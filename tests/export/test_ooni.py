"""`curfew export --ooni`: stored measurements come back out as OONI Web Connectivity
measurements that OONI's own data library reads, with the keys OONI's tools need, and that
`curfew import --ooni` judges the same way again."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from probe.commands import export as export_command
from probe.config import parse_config
from probe.export.ooni import export, ooni_record
from probe.export.ooni_keys import queries
from probe.ooni.importer import Options, import_files
from probe.store import Store
from tests.ooni.builders import TECHNIQUES, interception_chain, measurement
from tests.store.builders import T0, result

OONI_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
REPORT_ID = re.compile(r"^\d{8}T\d{6}Z_webconnectivity_[A-Z]{2}_\d+_n1_[A-Za-z0-9]{16}$")
BLOCKING = ("dns", "tcp_ip", "http-diff", "http-failure", False, None)
# The spec's keys per data format (df-000 envelope, df-002, df-005, df-006, df-001, df-008, ts-017).
ENVELOPE = {
    "annotations", "data_format_version", "input", "measurement_start_time", "probe_asn", "probe_cc",
    "probe_ip", "probe_network_name", "report_id", "resolver_asn", "resolver_ip", "software_name",
    "software_version", "test_helpers", "test_keys", "test_name", "test_runtime", "test_start_time",
    "test_version", "measurement_uid",
}  # fmt: skip
QUERY = {"answers", "engine", "failure", "hostname", "query_type", "resolver_address", "resolver_hostname",
         "resolver_port", "t", "transaction_id"}  # fmt: skip
TCP = {"ip", "port", "status", "t", "transaction_id"}
TLS = {"address", "cipher_suite", "failure", "negotiated_protocol", "no_tls_verify", "peer_certificates",
       "server_name", "t", "tls_version", "transaction_id"}  # fmt: skip
REQUEST = {"failure", "request", "response", "t", "transaction_id"}
EVENT = {"failure", "operation", "t"}
WEB_CONNECTIVITY = {"queries", "tcp_connect", "tls_handshakes", "requests", "network_events",
                    "dns_experiment_failure", "http_experiment_failure", "control", "control_failure",
                    "dns_consistency", "body_length_match", "body_proportion", "headers_match",
                    "status_code_match", "title_match", "blocking", "accessible"}  # fmt: skip


def _import(db: str, items: list[dict[str, Any]], tmp: Path) -> None:
    path = tmp / f"in-{len(list(tmp.iterdir()))}.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    summary = asyncio.run(import_files(db, [str(path)], Options(), report=print))
    assert summary.imported == len(items)


def _techniques() -> list[dict[str, Any]]:
    items = [measurement(t, start=f"2019-07-20 {i:02d}:00:00", serial=i) for i, t in enumerate(TECHNIQUES)]
    no_control = measurement("tcp", start="2019-07-20 23:00:00", serial=99)
    no_control["test_keys"]["control"] = {}
    no_control["test_keys"]["control_failure"] = "generic_timeout_error"
    return [*items, no_control]


def exported(url: str, **filters: Any) -> list[dict[str, Any]]:
    out = io.StringIO()
    count = asyncio.run(export(url, out, **filters))
    lines = out.getvalue().splitlines()
    assert count == len(lines)
    return [json.loads(line) for line in lines]


@pytest.fixture
def imported_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'curfew.db'}"
    _import(url, _techniques(), tmp_path)
    return url


def _verdicts(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return [v for (v,) in conn.execute("SELECT verdict FROM measurements ORDER BY started_at")]


def test_round_trip_gives_the_same_verdicts(imported_db: str, tmp_path: Path) -> None:
    """Export, then import the export: every verdict comes back (ok, dns, tcp, tls, mitm, http,
    target down, inconclusive without a control)."""
    records = exported(imported_db)
    again = f"sqlite:///{tmp_path / 'again.db'}"
    _import(again, records, tmp_path)
    first = _verdicts(imported_db)
    assert set(first) == {
        "ok", "dns_blocked", "tcp_blocked", "tls_blocked", "tls_mitm", "http_blocked", "target_down",
        "inconclusive",
    }  # fmt: skip
    assert _verdicts(again) == first


def test_every_line_loads_into_oonidatas_web_connectivity_model(imported_db: str) -> None:
    from oonidata.dataclient import load_measurement
    from oonidata.models.nettests import WebConnectivity

    for record in exported(imported_db):
        loaded = load_measurement(record)
        assert isinstance(loaded, WebConnectivity)
        keys = loaded.test_keys
        assert loaded.report_id and loaded.probe_cc == "KZ" and loaded.probe_asn == "AS9198"
        assert keys.blocking in BLOCKING
        assert keys.queries and {q.engine for q in keys.queries} == {"system"}
        assert sorted(q.query_type for q in keys.queries) == ["A", "AAAA"]
        if record["test_keys"]["control"] is not None:
            assert keys.control is not None and keys.control.http_request is not None
            assert keys.control_failure is None
        else:
            assert keys.control_failure
        assert keys.tcp_connect is None or all(c.transaction_id for c in keys.tcp_connect)
        if record["test_keys"]["x_curfew"]["verdict"] == "tls_mitm":
            certs = keys.tls_handshakes[0].peer_certificates
            assert [
                base64.b64encode(c.data).decode() if isinstance(c.data, bytes) else c.data for c in certs
            ] == list(interception_chain())
            assert keys.blocking == "http-failure" and keys.accessible is False


def test_the_spec_keys_of_every_data_format_are_there(imported_db: str) -> None:
    for record in exported(imported_db):
        assert set(record) >= ENVELOPE
        assert OONI_TIME.match(record["measurement_start_time"])
        assert REPORT_ID.match(record["report_id"])
        assert record["test_name"] == "web_connectivity" and record["test_version"] == "0.4.3"
        assert record["data_format_version"] == "0.2.0"
        assert {"platform", "engine_name", "engine_version"} <= set(record["annotations"])
        keys = record["test_keys"]
        assert set(keys) >= WEB_CONNECTIVITY
        assert keys["blocking"] in BLOCKING and keys["accessible"] in (True, False, None)
        for q in keys["queries"]:
            assert set(q) >= QUERY
        for c in keys["tcp_connect"]:
            assert set(c) >= TCP and {"success", "failure", "blocked"} <= set(c["status"])
        for h in keys["tls_handshakes"]:
            assert set(h) >= TLS
        for r in keys["requests"]:
            assert set(r) >= REQUEST
            assert {"url", "method", "headers", "headers_list", "body", "tor"} <= set(r["request"])
            assert {"code", "headers", "headers_list", "body", "body_is_truncated"} <= set(r["response"])
        for e in keys["network_events"]:
            assert set(e) >= EVENT
        curfew_keys = {
            k
            for k in keys
            if k not in WEB_CONNECTIVITY | {"agent", "client_resolver", "retries", "socksproxy"}
        }
        assert all(k.startswith("x_") for k in curfew_keys)


def test_blocking_and_accessible_follow_ooni(imported_db: str) -> None:
    by_verdict = {r["test_keys"]["x_curfew"]["verdict"]: r["test_keys"] for r in exported(imported_db)}
    flags = {v: (k["blocking"], k["accessible"]) for v, k in by_verdict.items()}
    assert flags == {
        "ok": (False, True),
        "dns_blocked": ("dns", False),
        "tcp_blocked": ("tcp_ip", False),
        "tls_blocked": ("http-failure", False),
        "tls_mitm": ("http-failure", False),
        "http_blocked": ("http-failure", False),  # the last http_blocked: a blocked redirect hop
        "target_down": (False, False),
        "inconclusive": (None, None),
    }
    blockpage = next(
        r["test_keys"]
        for r in exported(imported_db)
        if r["test_keys"]["x_curfew"]["verdict"] == "http_blocked"
        and r["test_keys"]["x_curfew"]["failure"] is None
    )
    assert blockpage["blocking"] == "http-diff"
    assert blockpage["status_code_match"] is True and blockpage["body_length_match"] is False
    assert 0 < blockpage["body_proportion"] < 0.7
    assert blockpage["title_match"] is False


def test_experiment_failures_and_transaction_ids(imported_db: str) -> None:
    records = {r["test_keys"]["x_curfew"]["verdict"]: r["test_keys"] for r in exported(imported_db)}
    assert records["dns_blocked"]["dns_experiment_failure"] in (None, "dns_nxdomain_error")
    assert records["tcp_blocked"]["http_experiment_failure"] == "generic_timeout_error"
    assert records["tls_blocked"]["http_experiment_failure"] == "connection_reset"
    keys = records["tls_mitm"]
    tcp_ids = {
        f"{c['ip']}:443" if ":" not in c["ip"] else f"[{c['ip']}]:443": c["transaction_id"]
        for c in keys["tcp_connect"]
    }
    assert all(h["transaction_id"] == tcp_ids[h["address"]] for h in keys["tls_handshakes"])
    assert len(set(tcp_ids.values())) == len(tcp_ids) and 1 not in tcp_ids.values()  # 1 is the lookup
    connects = [e for e in keys["network_events"] if e["operation"] == "connect"]
    assert {e["transaction_id"] for e in connects} == set(tcp_ids.values())


def test_engine_names_and_one_query_per_type() -> None:
    base = {
        "query": "www.facebook.com",
        "t0": 0.0,
        "t": 0.02,
        "answers": ["157.240.1.35", "2a03::1"],
        "failure": None,
    }
    system = queries({**base, "engine": "system", "resolver": "system"})
    assert [(q["engine"], q["query_type"], q["resolver_address"]) for q in system] == [
        ("system", "A", ""),
        ("system", "AAAA", ""),
    ]
    assert [a["ipv4"] for a in system[0]["answers"]] == ["157.240.1.35"]
    assert [a["ipv6"] for a in system[1]["answers"]] == ["2a03::1"]
    udp = queries({**base, "engine": "udp", "resolver": "192.0.2.53"})
    assert {(q["engine"], q["resolver_address"], q["resolver_port"]) for q in udp} == {
        ("udp", "192.0.2.53:53", "53")
    }
    v6 = queries({**base, "engine": "udp", "resolver": "[2001:db8::53]:5353"})
    assert v6[0]["resolver_address"] == "[2001:db8::53]:5353"
    doh = queries({**base, "engine": "doh", "resolver": "https://dns.example/dns-query"})
    assert doh[0]["resolver_address"] == "https://dns.example/dns-query" and doh[0]["engine"] == "doh"
    failed = queries({**base, "engine": "system", "answers": [], "failure": "dns_nxdomain_error"})
    assert [q["failure"] for q in failed] == ["dns_nxdomain_error", "dns_nxdomain_error"]


# -- measurements of curfew's own probes ------------------------------------------------------


async def _store(db: str, tmp: Path) -> list[Any]:
    config = parse_config(
        {
            "vantages": [
                {
                    "name": "kz-kazakhtelecom",
                    "probe_cc": "kz",
                    "probe_asn": "AS9198",
                    "probe_network_name": "JSC Kazakhtelecom",
                },
                {"name": "legacy", "labels": {"asn": "9198", "cc": "kz"}},
                {"name": "unlabelled"},
            ],
            "targets": [{"name": "facebook", "url": "https://www.facebook.com/"}],
        }
    )
    from datetime import timedelta

    stored = [
        result("ok", started_at=T0),
        result("tls_blocked", started_at=T0 + timedelta(minutes=5)),
        result("ok", vantage="unlabelled", started_at=T0 + timedelta(minutes=10)),
        result("ok", vantage="unlabelled", started_at=T0 + timedelta(minutes=11)),
        result("ok", vantage="legacy", started_at=T0 + timedelta(minutes=12)),
        result("ok", started_at=T0 + timedelta(days=1)),
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


def test_probe_identity_from_the_vantage_config_and_a_warning_once_without_it(
    db: tuple[str, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    url, stored = db
    with caplog.at_level(logging.WARNING, logger="probe.export.ooni"):
        records = exported(url)
    assert [r["measurement_uid"] for r in records] == [s.measurement.uid for s in stored]
    ident = [(r["probe_cc"], r["probe_asn"], r["probe_network_name"]) for r in records]
    assert ident[0] == ("KZ", "AS9198", "JSC Kazakhtelecom")
    assert ident[2] == ident[3] == ("ZZ", "AS0", None)
    assert ident[4] == ("KZ", "AS9198", None)  # labels cc/asn, as earlier versions read them
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "vantage unlabelled has no valid probe_cc/probe_asn" in warnings[0]


def test_report_id_per_vantage_and_day(db: tuple[str, list[Any]]) -> None:
    url, _ = db
    ids = [r["report_id"] for r in exported(url)]
    assert all(REPORT_ID.match(i) for i in ids)
    assert ids[0] == ids[1]  # same vantage, same day
    assert ids[0].startswith("20190609T000000Z_webconnectivity_KZ_9198_n1_")
    assert ids[5] != ids[0] and ids[5].startswith("20190610T")  # the next day
    assert ids[2] != ids[0]  # another vantage
    assert [r["report_id"] for r in exported(url)] == ids  # stable across exports


def test_throughput_samples_are_network_events_and_no_control_is_said(db: tuple[str, list[Any]]) -> None:
    url, stored = db
    ok = exported(url)[0]["test_keys"]
    reads = [e for e in ok["network_events"] if e["operation"] == "read"]
    assert (
        len(reads) == 40
        and sum(e["num_bytes"] for e in reads) == stored[0].measurement.throughput.samples[-1][1]
    )
    assert len({e["transaction_id"] for e in reads}) == 1
    assert ok["control"] is None and ok["control_failure"].startswith("unknown_failure")
    assert ok["body_length_match"] is None and ok["status_code_match"] is None
    assert ok["x_curfew"]["verdict"] == "ok"
    assert ok["requests"][0]["transaction_id"] == ok["tcp_connect"][0]["transaction_id"]


def test_a_corrupt_stored_row_is_skipped_and_named(
    db: tuple[str, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    url, stored = db
    bad = stored[1].measurement.uid
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE measurements SET observations = '{\"tcp\": [' WHERE uid = ?", (bad,))
    with caplog.at_level(logging.WARNING, logger="probe.export.ooni"):
        records = exported(url)
    assert bad not in [r["measurement_uid"] for r in records]
    assert len(records) == len(stored) - 1
    assert any(f"measurement {bad}: corrupt stored observations" in r.getMessage() for r in caplog.records)


def test_a_row_needs_no_database_to_convert() -> None:
    r = result("ok")
    row = {
        "uid": "u1",
        "started_at": "2019-06-09 05:00:00.123456",
        "vantage": "v",
        "target": "facebook",
        "url": "https://www.facebook.com/",
        "runtime_s": 1.5,
        "observations": json.dumps(r.measurement.to_dict()),
        "analysis": {"verdict": "ok", "accessible": True},
    }
    record = ooni_record(row, {"probe_cc": "KZ", "probe_asn": "AS65000"})
    assert record["measurement_start_time"] == "2019-06-09 05:00:00"
    assert (record["probe_asn"], record["probe_cc"]) == ("AS65000", "KZ")


def test_the_command_writes_json_lines(db: tuple[str, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    url, stored = db
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    args = parser.parse_args(["export", "--ooni", "--db", url, "--vantage", "kz-kazakhtelecom"])
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["measurement_uid"] for line in out.splitlines()] == [
        stored[0].measurement.uid, stored[1].measurement.uid, stored[5].measurement.uid,
    ]  # fmt: skip
    assert "3 measurements exported" in err


async def _store_judged(db: str, tmp: Path) -> dict[str, str]:
    """Throttling and a vantage cut off, judged as the daemon judges them (with control targets
    and a control vantage) and stored with the control record; returns target -> verdict."""
    from probe.analysis.verdict import analyze
    from probe.control import from_vantage, no_control
    from probe.model import Result
    from tests.analysis.builders import at_control_vantage, control, throughput
    from tests.analysis.builders import measurement as built

    cases = {
        "throttled": (
            built("facebook", throughput_obs=throughput(150_000)),
            [control(throughput_obs=throughput(20_000_000))],
        ),
        "vantage_down": (
            built("youtube", dns_failure="generic_timeout_error"),
            [control(dns_failure="generic_timeout_error")],
        ),
    }
    store = await Store.open(db, tmp / "spool-judged")
    verdicts = {}
    try:
        for expected, (m, controls) in cases.items():
            reference = at_control_vantage(m.target)
            a = analyze(m, controls=controls, control_vantage=reference)
            assert a.verdict == expected
            verdicts[m.target] = a.verdict
            for c in controls:
                store.submit(Result(c, analyze(c, controls=[m]), no_control([m])))
            store.submit(Result(m, a, from_vantage(reference, m, controls)))
    finally:
        await store.close()
    return verdicts


def test_round_trip_of_verdicts_that_rest_on_control_targets(tmp_path: Path) -> None:
    """OONI's format has no control targets: they travel as x_curfew_controls, so throttling and
    a vantage cut off come back as themselves."""
    db = f"sqlite:///{tmp_path / 'judged.db'}"
    verdicts = asyncio.run(_store_judged(db, tmp_path))
    records = exported(db)
    keys = {r["annotations"]["x_curfew_target"]: r["test_keys"] for r in records}
    assert keys["facebook"]["blocking"] is False and keys["facebook"]["accessible"] is True  # throttled
    assert keys["youtube"]["blocking"] is None and keys["youtube"]["accessible"] is None  # vantage down
    assert keys["facebook"]["x_curfew_controls"][0]["throughput_bps"] > 10_000_000
    facebook = next(r for r in records if r["annotations"]["x_curfew_target"] == "facebook")
    assert facebook["test_helpers"] == {
        "x_curfew_control_vantage": {"address": "control-de", "type": "x_curfew"}
    }
    again = f"sqlite:///{tmp_path / 'again.db'}"
    _import(again, [r for r in records if r["annotations"]["x_curfew_target"] in verdicts], tmp_path)
    with sqlite3.connect(again.removeprefix("sqlite:///")) as conn:
        got = dict(conn.execute("SELECT target, verdict FROM measurements").fetchall())
    assert got == {"www.facebook.com": "throttled", "www.youtube.example": "vantage_down"}


def test_the_shipped_kazakhstan_scenario_carries_its_networks() -> None:
    from importlib import resources

    from probe.config import Vantage
    from probe.export.ooni import network
    from probe.lab.scenario import load_scenario

    path = resources.files("probe").joinpath("lab/scenarios/kazakhstan-2019.yaml")
    for v in load_scenario(str(path)).vantages:
        checked = Vantage(name=v.name, probe_cc=v.probe_cc, probe_asn=v.probe_asn)  # the config's validation
        assert network({"probe_cc": checked.probe_cc or "", "probe_asn": checked.probe_asn or ""}) is not None
        assert v.probe_network_name


def test_the_command_names_and_counts_corrupt_rows(
    db: tuple[str, list[Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, stored = db
    bad = stored[0].measurement.uid
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE measurements SET analysis = 'not json' WHERE uid = ?", (bad,))
    parser = argparse.ArgumentParser()
    export_command.register(parser.add_subparsers())
    args = parser.parse_args(["export", "--ooni", "--db", url])
    assert args.handler(args) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == len(stored) - 1
    assert f"curfew export: measurement {bad}: corrupt stored observations" in err
    assert f"{len(stored) - 1} measurements exported; 1 with corrupt stored observations skipped" in err
