"""`curfew import --ooni`: files as OONI publishes them into a store, idempotently, with bad
lines reported and skipped; then report, the SQL views and analyze --rebuild over the result."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from probe.cli import main
from tests.ooni.builders import TECHNIQUES, measurement

EXPECTED = {
    "ok": "ok",
    "dns": "dns_blocked",
    "dns_nxdomain": "dns_blocked",
    "tcp": "tcp_blocked",
    "tls": "tls_blocked",
    "mitm": "tls_mitm",
    "http_blockpage": "http_blocked",
    "down": "target_down",
    "captcha": "ok",
    "broken_redirect": "target_down",
    "transparent_proxy": "ok",
    "redirect_blocked": "http_blocked",
    "redirect_ok": "ok",
}


def _jsonl(path: Path, items: list[dict[str, Any]], extra: list[str] = ()) -> Path:  # type: ignore[assignment]
    lines = [json.dumps(i) for i in items] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'ooni.db'}"


def _rows(url: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute(
            "SELECT vantage, target, verdict, local_hour FROM measurements ORDER BY started_at"
        ).fetchall()


def _every_technique(lte: bool) -> list[dict[str, Any]]:
    return [
        measurement(t, lte=lte, start=f"2019-07-20 {i:02d}:00:00", serial=i) for i, t in enumerate(TECHNIQUES)
    ]


@pytest.mark.parametrize("lte", [False, True], ids=["classic", "lte"])
def test_every_technique_gets_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lte: bool
) -> None:
    path = _jsonl(tmp_path / "wc.jsonl", _every_technique(lte))
    assert main(["import", "--ooni", str(path), "--db", _db(tmp_path), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got = {TECHNIQUES[i]: o["verdict"] for i, o in enumerate(out)}
    assert got == EXPECTED
    first = out[0]
    assert first["measurement_uid"].endswith(
        "_KZ_webconnectivity_" + first["measurement_uid"].rsplit("_", 1)[1]
    )
    assert first["input"] == "https://www.facebook.com/"
    assert first["vantage"] == "KZ-AS9198" and first["measurement_start_time"] == "2019-07-20 00:00:00"
    assert {"verdict", "reason", "observations", "ooni_blocking", "ooni_accessible"} <= set(first)
    assert [r[2] for r in _rows(_db(tmp_path))] == list(EXPECTED.values())


def test_reimport_adds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _jsonl(tmp_path / "wc.jsonl", _every_technique(False))
    db = _db(tmp_path)
    assert main(["import", "--ooni", str(path), "--db", db]) == 0
    assert "13 measurements imported (13 new, 0 already stored)" in capsys.readouterr().err
    assert main(["import", "--ooni", str(path), str(path), "--db", db]) == 0
    assert "26 measurements imported (0 new, 26 already stored)" in capsys.readouterr().err
    assert len(_rows(db)) == 13


def test_without_measurement_uid_reimport_is_idempotent_by_report_input_and_time(tmp_path: Path) -> None:
    items = _every_technique(True)
    for item in items:
        del item["measurement_uid"]
    path = _jsonl(tmp_path / "wc.jsonl", items)
    db = _db(tmp_path)
    assert main(["import", "--ooni", str(path), "--db", db]) == 0
    assert main(["import", "--ooni", str(path), "--db", db]) == 0
    assert len(_rows(db)) == len(items)


def test_bad_lines_are_reported_with_their_number_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = json.dumps(measurement("ok"))
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                good,
                good[: len(good) // 2],  # truncated
                "\x00garbage{{",
                json.dumps({**measurement("ok", serial=2), "test_name": "telegram"}),
                json.dumps({**measurement("ok", serial=3), "input": None}),
                json.dumps(measurement("tcp", serial=4)),
            ]
        )
        + "\n"
    )
    assert main(["import", "--ooni", str(path), "--db", _db(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:2: not JSON" in err
    assert f"{path}:3: not JSON" in err
    assert f"{path}:5: not a usable web_connectivity measurement (input is not a URL)" in err
    assert "2 measurements imported (2 new, 0 already stored)" in err
    assert "1 of another test skipped" in err and "3 bad lines skipped" in err
    assert [r[2] for r in _rows(_db(tmp_path))] == ["ok", "tcp_blocked"]


def test_gzip_file_and_a_single_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gz = tmp_path / "wc.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        for item in _every_technique(False)[:5]:
            f.write(json.dumps(item) + "\n")
    doc = tmp_path / "one.json"
    doc.write_text(json.dumps(measurement("mitm", serial=99), indent=2))
    assert main(["import", "--ooni", str(gz), str(doc), "--db", _db(tmp_path)]) == 0
    assert "6 measurements imported (6 new" in capsys.readouterr().err
    assert [r[2] for r in _rows(_db(tmp_path))][-1] == "tls_mitm"


def test_a_truncated_gzip_keeps_what_came_before_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gz = tmp_path / "cut.jsonl.gz"
    data = gzip.compress("".join(json.dumps(m) + "\n" for m in _every_technique(False)).encode())
    gz.write_bytes(data[: len(data) * 2 // 3])
    after = _jsonl(tmp_path / "after.jsonl", [measurement("tcp", serial=77)])
    assert main(["import", "--ooni", str(gz), str(after), "--db", _db(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{gz}: truncated gzip file" in err
    assert "1 file could not be read (in full)" in err
    rows = _rows(_db(tmp_path))
    assert 1 < len(rows) < 14  # the lines before the damage, and the next file
    assert rows[-1][2] == "tcp_blocked"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], compressed: bool
) -> None:
    import io
    import sys

    data = "".join(json.dumps(m) + "\n" for m in _every_technique(True)[:3]).encode()
    data = gzip.compress(data) if compressed else data
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    assert main(["import", "--ooni", "-", "--db", _db(tmp_path)]) == 0
    assert "3 measurements imported" in capsys.readouterr().err


def test_nothing_imported_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("not json\n" + json.dumps({**measurement("ok"), "test_name": "dnscheck"}) + "\n")
    assert main(["import", "--ooni", str(path), "--db", _db(tmp_path)]) == 1
    assert "0 measurements imported" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "no-equals-sign"],
        ["--target", "bad name=facebook.com"],
        ["--timezone", "Mars/Olympus"],
        ["--vantage", "KZ-AS9198=bad name"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    path = _jsonl(tmp_path / "wc.jsonl", [measurement("ok")])
    assert main(["import", "--ooni", str(path), "--db", _db(tmp_path), *args]) == 2
    assert "curfew: error:" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_a_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--ooni", str(tmp_path / "nope.jsonl"), "--db", _db(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope.jsonl'}: No such file or directory" in err
    assert "0 measurements imported" in err


def test_targets_and_vantages_renamed_and_local_hour_from_the_country(tmp_path: Path) -> None:
    items = [
        measurement("ok", url="https://www.facebook.com/", start="2019-07-20 15:00:00"),
        measurement("tcp", url="https://m.facebook.com/", start="2019-07-20 16:00:00"),
    ]
    path = _jsonl(tmp_path / "wc.jsonl", items)
    db = _db(tmp_path)
    args = ["--target", "facebook=facebook.com", "--vantage", "KZ-AS9198=kaztelecom"]
    assert main(["import", "--ooni", str(path), "--db", db, *args]) == 0
    # Asia/Almaty was UTC+6 in 2019: 15:00 UTC is 21:00 local.
    assert _rows(db) == [("kaztelecom", "facebook", "ok", 21), ("kaztelecom", "facebook", "tcp_blocked", 22)]
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        zone, labels = conn.execute("SELECT timezone, labels FROM vantages").fetchone()
    assert zone == "Asia/Almaty"
    assert json.loads(labels)["probe_asn"] == "AS9198"


def test_report_and_analyze_rebuild_work_over_imported_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An evening stripe over a week: blocked 20:00-22:00 local (14-16 UTC), ok otherwise."""
    items = []
    for day in range(1, 8):
        for hour in range(0, 24, 2):
            technique = "tcp" if hour in (14, 16) else "ok"
            start = f"2019-07-{day:02d} {hour:02d}:00:00"
            items.append(measurement(technique, start=start, url="https://www.facebook.com/"))
            items.append(
                measurement(technique, start=start.replace(":00:00", ":30:00"), url="https://m.facebook.com/")
            )
    path = _jsonl(tmp_path / "month.jsonl", items)
    db = _db(tmp_path)
    assert main(["import", "--ooni", str(path), "--db", db, "--target", "facebook=facebook.com"]) == 0
    capsys.readouterr()
    assert (
        main(["report", "--db", db, "--format", "json", "--since", "2019-07-01", "--until", "2019-07-07"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    text = json.dumps(report)
    assert "KZ-AS9198" in text and "facebook" in text
    config = tmp_path / "curfew.yaml"
    config.write_text(
        f"database: {db}\nvantages:\n  - name: KZ-AS9198\n    timezone: Asia/Almaty\n"
        "targets:\n  - name: facebook\n    url: https://www.facebook.com/\n"
    )
    assert main(["analyze", "--rebuild", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "7 episodes" in out
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        hours = conn.execute(
            "SELECT local_hour, sum(blocked), sum(ok) FROM hourly_counts GROUP BY local_hour"
        ).fetchall()
        episodes = conn.execute("SELECT local_start, local_end FROM blackouts ORDER BY started_at").fetchall()
    blocked_hours = {h for h, b, _ in hours if b}
    assert blocked_hours == {20, 22}
    # Onset between the last ok (18:30 local) and the first blocked probe (20:00), offset between
    # the last blocked (22:30) and the next ok (00:00).
    start, end = episodes[0]
    assert "2019-07-01 18:30" <= start <= "2019-07-01 20:00"
    assert "2019-07-01 22:30" <= end <= "2019-07-02 00:00"


async def test_the_ready_sql_queries_work_over_imported_data_imported_once(
    database_url: str, tmp_path: Path
) -> None:
    """docs/sql.md's ready queries, unchanged, over an import (SQLite, and PostgreSQL when set)."""
    from sqlalchemy import text

    from probe.ooni.importer import Options, import_files
    from probe.ooni.parse import Naming
    from probe.store.engine import create_engine
    from tests.store.test_sql_docs import QUERIES

    # The queries name 9 June 2019 (the election day) as their example day.
    items = [measurement("ok", start="2019-06-09 05:00:00"), measurement("tcp", start="2019-06-09 05:30:00")]
    path = _jsonl(tmp_path / "wc.jsonl", items)
    summary = await import_files(
        database_url, [str(path)], Options(Naming(targets=[("facebook", "facebook.com")])), report=print
    )
    assert summary.new == 2
    again = await import_files(
        database_url, [str(path)], Options(Naming(targets=[("facebook", "facebook.com")])), report=print
    )
    assert (again.imported, again.new) == (2, 0)  # idempotent on this backend too
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        latest, per_day, failures, hours = [
            [tuple(r) for r in (await conn.execute(text(q))).all()] for q in QUERIES[:4]
        ]
    await engine.dispose()
    assert [(v, t, verdict) for v, t, verdict, *_ in latest] == [("KZ-AS9198", "facebook", "tcp_blocked")]
    assert [(op, f, v, int(n)) for op, f, v, n in failures] == [
        ("tcp_connect", "generic_timeout_error", "tcp_blocked", 1)
    ]
    assert [(t, h, int(n), float(s)) for t, h, n, s in hours] == [("facebook", "05", 2, 0.5)]
    assert per_day and per_day[0][0] == "2019-06-09"


def test_progress_bar_on_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    line = json.dumps(measurement("ok"))
    uid = measurement("ok")["measurement_uid"]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(line.replace(uid, f"{uid}{i}") + "\n" for i in range(600)))
    assert main(["import", "--ooni", str(path), "--db", _db(tmp_path)]) == 0
    assert "\r" not in capsys.readouterr().err  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["import", "--ooni", str(path), "--db", f"sqlite:///{tmp_path / 'tty.db'}"]) == 0
    err = capsys.readouterr().err
    assert "\r" in err and "measurements read" in err and "%" in err
    assert (
        err.rstrip()
        .splitlines()[-1]
        .endswith("curfew import: 600 measurements imported (600 new, 0 already stored); verdicts: ok 600")
    )  # bar cleared


@pytest.mark.parametrize("lte", [False, True], ids=["classic", "lte"])
def test_analyze_rejudge_keeps_the_imported_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lte: bool
) -> None:
    """Judged again from what the store kept (the helper's answer, the chain, the bot-check
    marker of a page that is not kept), every imported measurement gets the same verdict."""
    items = _every_technique(lte)
    no_control = measurement("tcp", lte=lte, start="2019-07-20 23:00:00", serial=99)
    no_control["test_keys"].update(control={}, control_failure="generic_timeout_error")
    captcha_in_body = measurement("captcha", lte=lte, start="2019-07-20 23:30:00", serial=98)
    response = captcha_in_body["test_keys"]["requests"][0]["response"]
    response["headers_list"] = [["Content-Type", "text/html"], ["Server", "cloudflare"]]
    response["headers"] = dict(response["headers_list"])
    path = _jsonl(tmp_path / "wc.jsonl", [*items, no_control, captcha_in_body])
    db = _db(tmp_path)
    assert main(["import", "--ooni", str(path), "--db", db]) == 0
    before = _rows(db)
    assert before[-2][2] == "inconclusive" and before[-1][2] == "ok"
    config = tmp_path / "curfew.yaml"
    config.write_text(
        f"database: {db}\nvantages:\n  - name: KZ-AS9198\n    timezone: Asia/Almaty\n"
        "targets:\n  - name: www.facebook.com\n    url: https://www.facebook.com/\n"
    )
    capsys.readouterr()
    assert main(["analyze", "--rebuild", "--rejudge", "--config", str(config)]) == 0
    assert f"{len(before)} measurements judged again, 0 changed" in capsys.readouterr().out
    assert _rows(db) == before
