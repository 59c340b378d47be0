"""docs/ooni.md's worked example holds: the shipped month of KZ measurements imports into the
evening stripe, the interception from 17 July, and the schedules the doc shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.cli import main

FIXTURE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "ooni-kz-2019-07.jsonl.gz"


def test_the_shipped_month_gives_the_documented_heatmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'kz.db'}"
    names = ["--target", "facebook=facebook.com", "--target", "youtube=youtube.com"]
    assert main(["import", "--ooni", str(FIXTURE), "--db", db, *names]) == 0
    assert "1488 measurements imported" in capsys.readouterr().err
    window = ["--since", "2019-07-01", "--until", "2019-07-31", "--window-days", "31"]
    assert main(["report", "--db", db, *window]) == 0
    text = capsys.readouterr().out
    assert "2019-07-01 Mon ····················██··" in text
    assert "2019-07-20 Sat ████████████████████████" in text  # facebook: intercepted all day
    assert "schedule: blocked daily 19:40-21:40 Asia/Almaty on 16 of 31 days, tls_blocked" in text
    assert "schedule: blocked daily 20:10-22:10 Asia/Almaty on 31 of 31 days, tcp_blocked" in text
    assert main(["report", "--db", db, *window, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "tls_mitm" in json.dumps(report)
