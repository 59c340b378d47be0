"""OONI files into a curfew store: parse, judge, write, in constant memory and idempotently.

Each measurement's uid is derived from OONI's own identity (`parse.derived_uid`) and rows go in
with ``INSERT ... ON CONFLICT (uid) DO NOTHING`` through the store's bulk inserter, so importing
a file twice adds nothing the second time. Rows are written `BATCH` at a time; nothing else is
kept per measurement, so memory does not grow with the file. Vantages and targets first seen
are added to the inventory (never overwriting a configured one), the vantage with its
country's zone so the hour-of-day heatmap reads local time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from probe.analysis.fingerprints import Fingerprints, default_fingerprints
from probe.model import Result
from probe.ooni.judge import control_record, judge, server_side
from probe.ooni.parse import Imported, Naming, NotWebConnectivity, parse
from probe.ooni.read import Line, Progress, read_file
from probe.ooni.zones import country_zone
from probe.store import bulk, migrate, tables
from probe.store.engine import StoreError, create_engine
from probe.store.mapping import Row, encode

BATCH: Final = 500
MAX_REPORTED: Final = 50
"""Bad lines reported one by one; past this many they are only counted."""


@dataclass
class Summary:
    """What an import did."""

    read: int = 0
    imported: int = 0
    new: int = 0
    other_tests: int = 0
    bad: int = 0
    unreadable: int = 0
    """Files that could not be opened or read to their end (what they held before counts)."""
    verdicts: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return self.imported - self.new


Report = Callable[[str], None]
Emit = Callable[[Imported, Result], None]


@dataclass
class Options:
    naming: Naming = field(default_factory=Naming)
    timezone: str | None = None
    fingerprints: Fingerprints | None = None


def judged(line: Line, options: Options, summary: Summary, report: Report) -> tuple[Imported, Result] | None:
    """One line to (what was read, its result); None when skipped (counted in `summary`)."""
    summary.read += 1
    where = f"{line.source}:{line.number}"
    if line.record is None:
        _bad(summary, report, f"{where}: {line.error}")
        return None
    try:
        imported = parse(line.record, options.naming)
    except NotWebConnectivity:
        summary.other_tests += 1
        return None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        _bad(summary, report, f"{where}: not a usable web_connectivity measurement ({exc})")
        return None
    try:
        analysis = judge(imported, options.fingerprints or default_fingerprints())
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # Data the analysis cannot take (a shape no test foresaw) costs one measurement, not the run.
        _bad(summary, report, f"{where}: could not be judged ({type(exc).__name__}: {exc})")
        return None
    marker = server_side(imported.measurement.http) if analysis.verdict == "ok" else None
    if marker is not None:  # kept with the row: its page is not (see judge.judge)
        m = imported.measurement
        imported = replace(imported, measurement=replace(m, labels={**m.labels, "ooni_server_side": marker}))
    summary.imported += 1
    summary.verdicts[analysis.verdict] = summary.verdicts.get(analysis.verdict, 0) + 1
    return imported, Result(imported.measurement, analysis, control_record(imported))


def _bad(summary: Summary, report: Report, message: str) -> None:
    summary.bad += 1
    if summary.bad <= MAX_REPORTED:
        report(message)
    elif summary.bad == MAX_REPORTED + 1:
        report(f"more than {MAX_REPORTED} bad lines: the rest are only counted")


class _Inventory:
    """Vantages and targets seen so far; new ones written once, their zones remembered."""

    def __init__(self, engine: AsyncEngine, timezone: str | None) -> None:
        self._engine = engine
        self._timezone = timezone
        self.zones: dict[str, ZoneInfo] = {}
        self._targets: set[str] = set()
        self._vantage_rows: list[Row] = []
        self._target_rows: list[Row] = []

    async def load(self) -> None:
        from sqlalchemy import select

        async with self._engine.connect() as conn:
            v = tables.vantages
            for name, zone in await conn.execute(select(v.c.name, v.c.timezone)):
                self.zones[name] = ZoneInfo(zone)
            self._targets = {name for (name,) in await conn.execute(select(tables.targets.c.name))}

    def see(self, imported: Imported) -> None:
        m = imported.measurement
        now = datetime.now(UTC)
        if m.vantage not in self.zones:
            zone = self._timezone or country_zone(imported.probe_cc)
            self.zones[m.vantage] = ZoneInfo(zone)
            labels = {"source": "ooni", "probe_cc": imported.probe_cc, "probe_asn": imported.probe_asn}
            if imported.probe_network_name:
                labels["probe_network_name"] = imported.probe_network_name
            self._vantage_rows.append(
                {
                    "name": m.vantage,
                    "timezone": zone,
                    "control": False,
                    "labels": labels,
                    "source_address": None,
                    "resolver": "system",
                    "proxy": None,
                    "active": False,
                    "first_seen": now,
                    "last_seen": now,
                }
            )
        if m.target not in self._targets:
            self._targets.add(m.target)
            self._target_rows.append(
                {
                    "name": m.target,
                    "url": m.url,
                    "throughput_url": None,
                    "control": False,
                    "interval_s": None,
                    "labels": {"source": "ooni"},
                    "active": False,
                    "first_seen": now,
                    "last_seen": now,
                }
            )

    async def write(self) -> None:
        """The vantages and targets first seen since the last call (a configured one is kept)."""
        if not self._vantage_rows and not self._target_rows:
            return
        insert: Any = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        async with self._engine.begin() as conn:
            for table, rows in ((tables.vantages, self._vantage_rows), (tables.targets, self._target_rows)):
                if rows:
                    await conn.execute(insert(table).on_conflict_do_nothing(index_elements=["name"]), rows)
        self._vantage_rows, self._target_rows = [], []


async def import_files(
    url: str,
    paths: Sequence[str],
    options: Options,
    *,
    report: Report,
    emit: Emit | None = None,
    progress: Progress | None = None,
    tick: Callable[[Summary], None] | None = None,
) -> Summary:
    """Import every measurement in `paths` into the store at `url`.

    `report` gets one line per problem (a bad line with its file and number); `emit` gets each
    result as it is judged (``--json``); `tick` is called after each batch (the progress bar).
    Raises `StoreError` when the database cannot be opened or written; a file that cannot be
    read is reported and counted (`Summary.unreadable`).
    """
    summary = Summary()
    try:
        await asyncio.to_thread(migrate.upgrade, url)
    except Exception as exc:
        raise StoreError(_describe(exc)) from exc
    engine = create_engine(url)
    inserter = bulk.inserter(engine)
    inventory = _Inventory(engine, options.timezone)
    try:
        await inventory.load()
        batch: list[Row] = []
        for line in _lines(paths, progress, summary, report):
            done = judged(line, options, summary, report)
            if done is None:
                continue
            imported, result = done
            inventory.see(imported)
            if emit is not None:
                emit(imported, result)
            batch.append(encode(result, inventory.zones.get(imported.measurement.vantage))[0])
            if len(batch) >= BATCH:
                await _flush(inventory, inserter, batch, summary)
                batch = []
                if tick is not None:
                    tick(summary)
        await _flush(inventory, inserter, batch, summary)
    except StoreError:
        raise
    except Exception as exc:  # the database: refused, locked, gone
        raise StoreError(_describe(exc)) from exc
    finally:
        await inserter.close()
        await engine.dispose()
    return summary


def _lines(
    paths: Iterable[str], progress: Progress | None, summary: Summary, report: Report
) -> Iterable[Line]:
    """Every file's lines; a file that cannot be read (missing, a truncated download) is
    reported and the next one read, keeping what it held up to the damage."""
    for path in paths:
        try:
            yield from read_file(path, progress)
        except OSError as exc:
            summary.unreadable += 1
            message = f"{path}: {exc.strerror}" if exc.strerror else str(exc)
            report(message if message.startswith(path) else f"{path}: {message}")


async def _flush(inventory: _Inventory, inserter: bulk.Inserter, batch: list[Row], summary: Summary) -> None:
    await inventory.write()
    if batch:
        summary.new += await inserter.insert(batch)


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0] if str(orig or exc) else type(exc).__name__
