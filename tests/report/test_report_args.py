"""`curfew report` with options a user can get wrong: one line naming the option, exit 2, no
traceback; and a range far wider than the data is cut to the days that have measurements
(issue 12, item 9)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.conftest import DAYS
from tests.report.test_report import report


def test_output_to_a_directory_is_refused_before_anything_is_read(
    kz_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = report(capsys, "--db", kz_db, "--output", str(tmp_path))
    assert code == 2 and out == ""
    assert err == f"curfew: error: --output {tmp_path}: is a directory (give a file name)\n"


@pytest.mark.parametrize("fmt", ["text", "png"])
def test_output_into_a_missing_directory_is_refused(
    kz_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / "missing" / "report.out"
    code, _, err = report(capsys, "--db", kz_db, "--format", fmt, "--output", str(target))
    assert code == 2
    assert err == f"curfew: error: --output {target}: directory {target.parent} does not exist\n"
    assert not target.parent.exists()


@pytest.mark.parametrize("days", ["0", "3661", "3650000"])
def test_window_days_out_of_range_is_refused(
    kz_db: str, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    code, _, err = report(capsys, "--db", kz_db, "--window-days", days)
    assert code == 2
    assert err == "curfew: error: --window-days must be between 1 and 3660\n"


def local_days(csv_text: str) -> list[str]:
    return [row["local_day"] for row in csv.DictReader(io.StringIO(csv_text))]


def test_the_largest_window_works(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, "--db", kz_db, "--window-days", "3660", "--format", "csv")
    assert code == 0
    assert set(local_days(out)) == set(DAYS)


@pytest.mark.parametrize("fmt", ["text", "csv", "json"])
def test_since_the_year_one_is_the_report_from_the_first_day_with_data(
    kz_db: str, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    code, out, err = report(capsys, "--db", kz_db, "--since", "0001-01-01", "--format", fmt)
    assert code == 0, err
    _, from_first_day, _ = report(capsys, "--db", kz_db, "--since", DAYS[0], "--format", fmt)
    assert out == from_first_day  # 5 days of rows, not 740,000


def test_until_the_year_9999_is_no_traceback(kz_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = report(capsys, "--db", kz_db, "--since", "2019-05-01", "--until", "9999-12-31")
    assert code == 0, err
    assert "Traceback" not in err


def test_the_command_line_says_it_in_one_line(kz_db: str, tmp_path: Path) -> None:
    """The same through the installed entry point: stderr is the one line, nothing else."""
    done = subprocess.run(
        [sys.executable, "-m", "probe.cli", "report", "--db", kz_db, "--output", str(tmp_path / "no" / "x")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--output" in done.stderr


def test_measurements_over_more_than_ten_years_need_a_narrower_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    from datetime import UTC, datetime

    from probe.config import parse_config
    from probe.store import Store
    from tests.store.builders import result

    url = f"sqlite:///{tmp_path / 'wide.db'}"

    async def fill() -> None:
        config = parse_config(
            {"vantages": [{"name": "v"}], "targets": [{"name": "t", "url": "https://example.com/"}]}
        )
        store = await Store.open(url, tmp_path / "spool")
        try:
            await store.sync_inventory(config)
            for year in (2008, 2019):
                store.submit(
                    result("ok", vantage="v", target="t", started_at=datetime(year, 5, 6, tzinfo=UTC))
                )
        finally:
            await store.close()

    asyncio.run(fill())
    code, out, err = report(capsys, "--db", url, "--since", "0001-01-01")
    assert code == 2 and out == ""
    assert err == (
        "curfew: error: --since/--until: 2008-05-06 to 2019-05-06 has measurements on 4018 days; "
        "at most 3660 in one report\n"
    )
    code, _, err = report(capsys, "--db", url, "--since", "2019-01-01")
    assert code == 0, err
