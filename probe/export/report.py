"""`curfew report` as text, CSV and JSON: the local-hour x date heatmap, the inferred
schedules, one-offs and episodes of every (vantage, target), and vantage shutdowns once per
vantage. Pure: `build` takes what `probe.store.report.load` read; nothing here opens the
database (the PNG is `probe.export.heatmap`).

A text heatmap has one line per local day and one character per local hour:

    local hour     000000000011111111112222
                   012345678901234567890123
    2019-05-07 Tue ····················██··
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from probe.episodes import Episode
from probe.episodes.pattern import DEFAULT_WINDOW_DAYS, Pattern, Schedule, infer_pattern
from probe.store.report import Cell, ReportData

BLOCKED, SOME, REACHABLE, DOWN, NO_DATA = "█", "▒", "·", "x", " "
LEGEND = (
    f"{BLOCKED} blocked >= 50%   {SOME} some blocked   {REACHABLE} reachable   "
    f"{DOWN} vantage down   '{NO_DATA}' no data"
)
_COLOURS = {BLOCKED: "\x1b[31m", SOME: "\x1b[33m", REACHABLE: "\x1b[32m", DOWN: "\x1b[35m"}
_RESET = "\x1b[0m"
SLOW_CELLS = (
    "; cells counted from measurements (no hourly_counts for this range:"
    " run `curfew db upgrade` or `curfew analyze --rebuild` for fast reports)"
)
ROW_LABEL = len("2019-05-07 Tue ")  # the heatmap's cells start at this column
CSV_FIELDS = (
    "vantage",
    "target",
    "local_day",
    "local_hour",
    "probes",
    "ok",
    "blocked",
    "vantage_down",
    "ratio",
)


@dataclass(frozen=True)
class Series:
    """One (vantage, target): its cells by (local day, local hour), pattern and episodes."""

    vantage: str
    target: str
    zone: str
    cells: dict[tuple[str, int], Cell]
    pattern: Pattern
    episodes: tuple[Episode, ...]


@dataclass(frozen=True)
class VantageShutdowns:
    vantage: str
    zone: str
    pattern: Pattern
    episodes: tuple[Episode, ...]


@dataclass(frozen=True)
class Report:
    since: date
    until: date
    window_days: int
    episodes_from: str
    series: tuple[Series, ...]
    shutdowns: tuple[VantageShutdowns, ...]
    cells_from: str = "hourly_counts"

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range((self.until - self.since).days + 1)]


def _end(until: date, zone: str) -> datetime:
    """The last instant of the local day `until` (`infer_pattern`'s window ends on the local
    day of its `end`, and counts the episodes that started before it)."""
    return datetime.combine(until + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone)) - timedelta(
        microseconds=1
    )


def build(data: ReportData, window_days: int = DEFAULT_WINDOW_DAYS) -> Report:
    """The report of `data`: schedules inferred over the `window_days` local days ending with
    `data.until`, on the days each series has measurements."""
    by_pair: dict[tuple[str, str], dict[tuple[str, int], Cell]] = {}
    for (vantage, target, day, hour), cell in data.cells.items():
        by_pair.setdefault((vantage, target), {})[(day, hour)] = cell
    episodes: dict[tuple[str, str | None], list[Episode]] = {}
    for e in data.episodes:
        episodes.setdefault((e.vantage, e.target), []).append(e)

    series = []
    vantage_days: dict[str, set[str]] = {}
    for (vantage, target), cells in sorted(by_pair.items()):
        zone = data.zones.get(vantage, "UTC")
        observed = {date.fromisoformat(day) for day in {day for (day, _), c in cells.items() if c.probes}}
        vantage_days.setdefault(vantage, set()).update(day for day, _ in cells)
        found = episodes.get((vantage, target), [])
        pattern = infer_pattern(found, zone, _end(data.until, zone), days=window_days, observed_days=observed)
        series.append(Series(vantage, target, zone, cells, pattern, tuple(found)))
    shutdowns = []
    for vantage in sorted(vantage_days):
        found = episodes.get((vantage, None), [])
        if not found:
            continue
        zone = data.zones.get(vantage, "UTC")
        pattern = infer_pattern(
            found,
            zone,
            _end(data.until, zone),
            days=window_days,
            observed_days={date.fromisoformat(day) for day in vantage_days[vantage]},
        )
        shutdowns.append(VantageShutdowns(vantage, zone, pattern, tuple(found)))
    return Report(
        data.since,
        data.until,
        window_days,
        data.episodes_from,
        tuple(series),
        tuple(shutdowns),
        data.cells_from,
    )


# -- text ---------------------------------------------------------------------------------------


def glyph(cell: Cell | None) -> str:
    """The heatmap character of one local hour."""
    if cell is None:
        return NO_DATA
    if not cell.probes:
        return DOWN if cell.vantage_down else NO_DATA
    if cell.blocked * 2 >= cell.probes:
        return BLOCKED
    return SOME if cell.blocked else REACHABLE


def _paint(text: str, colour: bool) -> str:
    if not colour:
        return text
    return "".join(f"{_COLOURS[c]}{c}{_RESET}" if c in _COLOURS else c for c in text)


def heatmap(cells: dict[tuple[str, int], Cell], days: Iterable[date], colour: bool = False) -> list[str]:
    """The heatmap's lines: two header lines of local hours, then one line per day."""
    lines = [
        "local hour".ljust(ROW_LABEL) + "".join(str(h // 10) for h in range(24)),
        " " * ROW_LABEL + "".join(str(h % 10) for h in range(24)),
    ]
    for d in days:
        day = d.isoformat()
        row = "".join(glyph(cells.get((day, h))) for h in range(24))
        lines.append(f"{day} {d:%a} " + _paint(row, colour).rstrip())
    return lines


def duration(seconds: float) -> str:
    """Like "2h10m", "45m", "3d04h"."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def _local(at: datetime | None, zone: str) -> str:
    return "ongoing" if at is None else at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _episode_line(e: Episode, zone: str) -> str:
    length = "" if e.ended_at is None else duration((e.ended_at - e.started_at).total_seconds())
    return (
        f"  {_local(e.started_at, zone):<17} {_local(e.ended_at, zone):<17} {length:>8}  "
        f"{e.verdict:<13} {e.failure or '-':<22} {e.probes:>6}"
    )


def episodes_table(episodes: Iterable[Episode], zone: str) -> list[str]:
    rows = [_episode_line(e, zone) for e in episodes]
    if not rows:
        return ["episodes: none"]
    header = (
        f"  {'start (local)':<17} {'end (local)':<17} {'duration':>8}  {'verdict':<13} {'failure':<22} probes"
    )
    return [f"episodes ({len(rows)}):", header, *rows]


def _pattern_lines(pattern: Pattern, zone: str, window_days: int) -> list[str]:
    lines = [f"schedule: {s.describe()}" for s in pattern.schedules]
    if not lines:
        lines.append(f"schedule: none recurring in the last {window_days} days")
    for e in pattern.one_offs:
        end = "ongoing" if e.ended_at is None else _local(e.ended_at, zone)[11:]
        lines.append(
            f"one-off: {_local(e.started_at, zone)}-{end} {e.verdict}"
            + (f" ({e.failure})" if e.failure else "")
        )
    return lines


def render_text(report: Report, colour: bool = False) -> str:
    """The whole report for a terminal; `colour` adds ANSI colours to the heatmap cells."""
    days = report.days
    out = [
        f"curfew report: {report.since} to {report.until} (local days), {len(report.series)} series;"
        f" schedules over the last {report.window_days} days; episodes from {report.episodes_from}"
        + (SLOW_CELLS if report.cells_from == "measurements" else ""),
        "",
    ]
    shutdowns = {s.vantage: s for s in report.shutdowns}
    shown: set[str] = set()
    for s in report.series:
        if s.vantage not in shown and s.vantage in shutdowns:
            shown.add(s.vantage)
            v = shutdowns[s.vantage]
            out += [f"== {v.vantage}: vantage shutdowns ({v.zone})"]
            out += _pattern_lines(v.pattern, v.zone, report.window_days)
            out += [*episodes_table(v.episodes, v.zone), ""]
        out += [f"== {s.vantage} / {s.target} ({s.zone})"]
        out += heatmap(s.cells, days, colour)
        out += [" " * ROW_LABEL + LEGEND]
        out += _pattern_lines(s.pattern, s.zone, report.window_days)
        out += [*episodes_table(s.episodes, s.zone), ""]
    return "\n".join(out)


# -- csv and json -------------------------------------------------------------------------------


def _cell_rows(report: Report) -> Iterable[dict[str, Any]]:
    for s in report.series:
        for (day, hour), c in sorted(s.cells.items()):
            yield {
                "vantage": s.vantage,
                "target": s.target,
                "local_day": day,
                "local_hour": hour,
                "probes": c.probes,
                "ok": c.ok,
                "blocked": c.blocked,
                "vantage_down": c.vantage_down,
                "ratio": None if c.ratio is None else round(c.ratio, 4),
            }


def write_csv(report: Report, out: TextIO) -> None:
    """One row per (vantage, target, local day, local hour) with measurements; `ratio` (the
    reachable share of the conclusive probes) is empty when there were none."""
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_cell_rows(report))


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def episode_json(e: Episode, zone: str) -> dict[str, Any]:
    return {
        "vantage": e.vantage,
        "target": e.target,
        "started_at": _time(e.started_at),
        "ended_at": _time(e.ended_at),
        "start_local": _local(e.started_at, zone),
        "end_local": None if e.ended_at is None else _local(e.ended_at, zone),
        "duration_s": None if e.ended_at is None else (e.ended_at - e.started_at).total_seconds(),
        "verdict": e.verdict,
        "failure": e.failure,
        "probes": e.probes,
    }


def schedule_json(s: Schedule) -> dict[str, Any]:
    return {
        "description": s.describe(),
        "start_local": f"{s.start_local:%H:%M}",
        "end_local": f"{s.end_local:%H:%M}",
        "zone": s.zone,
        "days_seen": s.days_seen,
        "days_in_window": s.days_in_window,
        "weekdays": sorted(s.weekdays),
        "daily": s.daily,
        "verdict": s.verdict,
        "failure": s.failure,
    }


def _pattern_json(pattern: Pattern, episodes: Iterable[Episode], zone: str) -> dict[str, Any]:
    return {
        "schedules": [schedule_json(s) for s in pattern.schedules],
        "one_offs": [episode_json(e, zone) for e in pattern.one_offs],
        "episodes": [episode_json(e, zone) for e in episodes],
    }


def to_json(report: Report) -> dict[str, Any]:
    """The report as one JSON object: the range, every series' cells, schedules, one-offs and
    episodes, and the vantage shutdowns."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in _cell_rows(report):
        cells.setdefault((row.pop("vantage"), row.pop("target")), []).append(row)
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "window_days": report.window_days,
        "episodes_from": report.episodes_from,
        "cells_from": report.cells_from,
        "series": [
            {
                "vantage": s.vantage,
                "target": s.target,
                "zone": s.zone,
                "cells": cells.get((s.vantage, s.target), []),
                **_pattern_json(s.pattern, s.episodes, s.zone),
            }
            for s in report.series
        ],
        "vantage_shutdowns": [
            {"vantage": v.vantage, "zone": v.zone, **_pattern_json(v.pattern, v.episodes, v.zone)}
            for v in report.shutdowns
        ],
    }
