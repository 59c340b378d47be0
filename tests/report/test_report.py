"""`curfew report` on a database with an evening block: the heatmap's cells, the schedule,
the episodes, CSV, JSON and PNG, the filters, and what it says when there is nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from probe.cli import main
from probe.export.report import BLOCKED, DOWN, REACHABLE, ROW_LABEL
from probe.store import blackouts
from probe.store.engine import create_engine
from tests.report.conftest import BLOCKED_HOURS, DAYS, SHUTDOWN, VANTAGE, ZONE
from tests.store.conftest import execute

SCHEDULE = f"blocked daily 19:55-21:55 {ZONE} on 5 of 5 days, tls_blocked (connection_reset)"


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def section(text: str, title: str) -> list[str]:
    """The lines of one `== title` section."""
    lines = text.splitlines()
    start = lines.index(f"== {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("== ")), len(lines))
    return lines[start:end]


def heatmap_rows(lines: list[str]) -> dict[str, str]:
    """Local day -> its 24 cells."""
    return {line[:10]: line[ROW_LABEL:].ljust(24) for line in lines if line[:10] in DAYS}


def test_text_heatmap_marks_exactly_the_blocked_local_hours(
    kz_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = report(capsys, "--db", kz_db)
    assert code == 0
    assert "\x1b[" not in out  # no colours when stdout is not a terminal
    youtube = heatmap_rows(section(out, f"{VANTAGE} / youtube ({ZONE})"))
    control = heatmap_rows(section(out, f"{VANTAGE} / example ({ZONE})"))
    assert sorted(youtube) == sorted(control) == list(DAYS)
    for day in DAYS:
        for hour in range(24):
            expected = REACHABLE
            if (day, hour) == SHUTDOWN:
                expected = DOWN
            assert control[day][hour] == expected, (day, hour)
            if hour in BLOCKED_HOURS:
                expected = BLOCKED
            assert youtube[day][hour] == expected, (day, hour)


def test_text_shows_the_schedule_and_the_episodes(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = report(capsys, "--db", kz_db)
    youtube = section(out, f"{VANTAGE} / youtube ({ZONE})")
    assert f"schedule: {SCHEDULE}" in youtube
    assert "episodes (5):" in youtube
    episodes = [line.split() for line in youtube if line.startswith("  2019-")]
    assert episodes == [
        [day, "19:55", day, "21:55", "2h00m", "tls_blocked", "connection_reset", "12"] for day in DAYS
    ]
    control = section(out, f"{VANTAGE} / example ({ZONE})")
    assert "episodes: none" in control
    # A window of exactly the five days ends on the last of them and counts all five.
    _, out, _ = report(capsys, "--db", kz_db, "--window-days", "5")
    assert f"schedule: {SCHEDULE}" in section(out, f"{VANTAGE} / youtube ({ZONE})")


def test_a_vantage_shutdown_is_shown_once_for_the_vantage(
    kz_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = report(capsys, "--db", kz_db)
    assert out.count(f"== {VANTAGE}: vantage shutdowns ({ZONE})") == 1
    shutdowns = section(out, f"{VANTAGE}: vantage shutdowns ({ZONE})")
    assert any(line.startswith("one-off: 2019-05-07 02:55-03:55 vantage_down") for line in shutdowns)
    assert "episodes (1):" in shutdowns
    assert sum("vantage_down" in line for line in section(out, f"{VANTAGE} / youtube ({ZONE})")) == 0


def test_episodes_come_from_the_blackouts_table_once_it_is_filled(
    kz_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, detected, _ = report(capsys, "--db", kz_db)
    assert "episodes from measurements" in detected.splitlines()[0]

    async def rebuild() -> None:
        engine = create_engine(kz_db)
        async with engine.begin() as conn:
            await blackouts.rebuild(conn, {VANTAGE: ZONE})
        await engine.dispose()

    asyncio.run(rebuild())
    _, stored, _ = report(capsys, "--db", kz_db)
    assert "episodes from blackouts" in stored.splitlines()[0]
    assert stored.splitlines()[1:] == detected.splitlines()[1:]


def test_csv_has_one_row_per_local_hour(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, "--db", kz_db, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2 * len(DAYS) * 24
    cells = {(r["target"], r["local_day"], int(r["local_hour"])): r for r in rows}
    assert {r["vantage"] for r in rows} == {VANTAGE}
    evening = cells[("youtube", "2019-05-08", 20)]
    assert (evening["probes"], evening["ok"], evening["blocked"], evening["ratio"]) == ("6", "0", "6", "0.0")
    noon = cells[("youtube", "2019-05-08", 12)]
    assert (noon["probes"], noon["ok"], noon["blocked"], noon["ratio"]) == ("6", "6", "0", "1.0")
    down = cells[("example", *SHUTDOWN)]
    assert (down["probes"], down["vantage_down"], down["ratio"]) == ("0", "6", "")


def test_json_has_cells_schedules_one_offs_and_episodes(
    kz_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    code, out, _ = report(capsys, "--db", kz_db, "--format", "json", "--output", str(path))
    assert code == 0 and out == ""
    doc = json.loads(path.read_text())
    assert (doc["since"], doc["until"], doc["window_days"]) == ("2019-04-27", DAYS[-1], 14)
    series = {s["target"]: s for s in doc["series"]}
    youtube = series["youtube"]
    assert youtube["zone"] == ZONE and len(youtube["cells"]) == len(DAYS) * 24
    blocked = {(c["local_day"], c["local_hour"]) for c in youtube["cells"] if c["blocked"]}
    assert blocked == {(d, h) for d in DAYS for h in BLOCKED_HOURS}
    (schedule,) = youtube["schedules"]
    assert schedule["description"] == SCHEDULE
    assert (schedule["start_local"], schedule["end_local"], schedule["days_seen"]) == ("19:55", "21:55", 5)
    assert schedule["daily"] is True and schedule["verdict"] == "tls_blocked"
    assert youtube["one_offs"] == []
    assert [e["start_local"] for e in youtube["episodes"]] == [f"{d} 19:55" for d in DAYS]
    assert {e["duration_s"] for e in youtube["episodes"]} == {7200.0}
    assert series["example"]["episodes"] == []
    (shutdown,) = doc["vantage_shutdowns"]
    assert shutdown["vantage"] == VANTAGE and shutdown["schedules"] == []
    assert [e["target"] for e in shutdown["one_offs"]] == [None]
    assert shutdown["one_offs"][0]["start_local"] == "2019-05-07 02:55"


def test_png_is_a_heatmap_image(kz_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "report.png"
    code, _, err = report(capsys, "--db", kz_db, "--format", "png", "--output", str(path))
    assert code == 0, err
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000


def test_png_needs_an_output_file(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = report(capsys, "--db", kz_db, "--format", "png")
    assert code == 2 and "--output" in err


def test_filters_by_target_vantage_and_days(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = report(capsys, "--db", kz_db, "--target", "youtube")
    assert f"== {VANTAGE} / youtube ({ZONE})" in out and "/ example" not in out
    assert f"== {VANTAGE}: vantage shutdowns" in out  # a shutdown concerns every target

    _, out, _ = report(
        capsys, "--db", kz_db, "--format", "csv", "--since", "2019-05-07", "--until", "2019-05-08"
    )
    assert {r["local_day"] for r in csv.DictReader(io.StringIO(out))} == {"2019-05-07", "2019-05-08"}

    _, out, _ = report(capsys, "--db", kz_db, "--format", "csv", "--vantage", VANTAGE, "--vantage", "other")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 2 * len(DAYS) * 24


def test_an_empty_range_says_so_and_exits_0(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = report(capsys, "--db", kz_db, "--since", "2020-01-01", "--until", "2020-01-14")
    assert code == 0 and out == ""
    assert err.strip() == "curfew report: no measurements from 2020-01-01 to 2020-01-14; nothing to report"
    code, out, err = report(capsys, "--db", kz_db, "--vantage", "nowhere")
    assert code == 0 and "no measurements in the database for --vantage nowhere" in err


def test_a_missing_sqlite_database_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.db"
    code, out, err = report(capsys, "--db", f"sqlite:///{missing}")
    assert code == 1 and out == ""
    assert err.splitlines() == [f"curfew: error: no database at {missing}"]
    assert not missing.exists()  # not created by asking


def test_an_unreachable_server_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = report(capsys, "--db", "postgresql://curfew:secret@127.0.0.1:1/curfew")
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith("curfew: error: ") and "secret" not in line


def test_without_hourly_counts_the_cells_are_counted_from_measurements_and_it_says_so(
    kz_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, rolled_up, _ = report(capsys, "--db", kz_db)
    assert "cells counted from measurements" not in rolled_up
    asyncio.run(execute(kz_db, "DELETE FROM hourly_counts"))  # as in a database filled by hand
    code, counted, _ = report(capsys, "--db", kz_db)
    assert code == 0
    assert "cells counted from measurements" in counted.splitlines()[0]
    assert counted.splitlines()[1:] == rolled_up.splitlines()[1:]
