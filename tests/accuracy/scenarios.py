"""The accuracy tests' scenarios, their simulation settings, and reading back what was stored.

Each scenario is small: one censored vantage, one control vantage, one target and one control
target. The runs are simulated in worker processes (two at a time, one per core) so the
package's 14-day runs overlap; `simulate_run` is what a worker does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from probe.episodes.detect import detect
from probe.episodes.model import Episode, Observation
from probe.lab import Scenario, parse_scenario
from probe.lab.simulate import Simulation, Summary, simulate

ALMATY = "Asia/Almaty"
# Off the minute, so no rule edge ever coincides with a probe instant.
EVENING_START = dt.datetime(2024, 2, 22, 0, 2, 17, tzinfo=ZoneInfo(ALMATY))
"""14 days from here cross Almaty's change from UTC+6 to UTC+5 on 1 March 2024."""


def scenario(rules: list[dict[str, Any]], timezone: str = ALMATY, bulk: bool = False) -> Scenario:
    """censored + control vantage; `site` and the control target `wiki`."""
    target = {"port": 0, "bulk": bulk, "bulk_bytes": 256 * 1024}
    return parse_scenario(
        {
            "name": "accuracy",
            "timezone": timezone,
            "dns": {"listen": "127.0.0.1:0"},
            "vantages": [
                {"name": "censored", "address": "127.0.0.2"},
                {"name": "control", "address": "127.0.0.9", "control": True},
            ],
            "targets": [
                {"name": "site", "hosts": ["site.lab"], "address": "127.0.4.1", **target},
                {"name": "wiki", "hosts": ["wiki.lab"], "address": "127.0.4.2", "control": True, **target},
            ],
            "rules": rules,
        }
    )


def switch_delay(day: int, edge: int) -> int:
    """Seconds (0-299) after the minute at which the censor flips its switch on `day`: spread
    evenly over one base interval, so across the days the probe grid meets the edges at every
    phase, as it does across pairs in the daemon. A rule edge exactly on the minute would
    meet a grid anchored off the minute always at the same phase and measure one error only."""
    return (37 + 113 * day) % 300 if edge == 0 else (211 + 167 * day) % 300


def evening(days: int = 15, start: dt.datetime = EVENING_START) -> Scenario:
    """`site` TLS-reset at the censored vantage every evening 20:00-22:10 Almaty, each edge a
    few seconds to minutes after the minute (`switch_delay`); one dated rule per day."""
    zone = ZoneInfo(ALMATY)
    rules = []
    for i in range(days):
        day = start.astimezone(zone).date() + dt.timedelta(days=i)
        on = dt.datetime.combine(day, dt.time(20), zone) + dt.timedelta(seconds=switch_delay(i, 0))
        off = dt.datetime.combine(day, dt.time(22, 10), zone) + dt.timedelta(seconds=switch_delay(i, 1))
        rule = {"from": on.isoformat(), "until": off.isoformat()}
        rules.append({"action": "tls_reset", "vantages": ["censored"], "targets": ["site"], "when": rule})
    return scenario(rules)


def congestion() -> Scenario:
    """Evening congestion at the censored vantage, 20:00-23:00: site AND wiki slowed alike."""
    rule = {
        "action": "congestion",
        "rate_bps": 150_000,
        "vantages": ["censored"],
        "targets": ["site", "wiki"],
        "when": {"daily": "20:00-23:00"},
    }
    return scenario([rule], bulk=True)


def shutdown() -> Scenario:
    """The censored vantage cut off (blackhole: DNS and every target) daily 01:00-03:00."""
    return scenario([{"action": "blackhole", "vantages": ["censored"], "when": {"daily": "01:00-03:00"}}])


@dataclass(frozen=True)
class Run:
    """One simulation to make: what, how, and where its database goes."""

    name: str
    scenario: Scenario
    sim: Simulation


def evening_sim(watch: bool = True, days: float = 14) -> Simulation:
    return Simulation(days=days, start=EVENING_START, interval=300, confirm_interval=30, watch=watch)


RUNS: dict[str, Run] = {
    # 14 days, 5-minute base interval, re-probing and watch windows, across the offset change.
    "evening": Run("evening", evening(), evening_sim()),
    # 14 days of 3% loss and no rule; a short step timeout so a lost DNS query costs 0.1 s.
    "loss": Run(
        "loss",
        scenario([]),
        Simulation(days=14, start=EVENING_START, interval=300, loss=0.03, seed=4, step_timeout=0.1),
    ),
    "congestion": Run("congestion", congestion(), Simulation(days=3, start=EVENING_START, interval=300)),
    "shutdown": Run(
        "shutdown", shutdown(), Simulation(days=3, start=EVENING_START, interval=300, step_timeout=0.2)
    ),
}


def simulate_run(name: str, directory: Path) -> tuple[Path, Summary]:
    """Simulate `RUNS[name]` into a SQLite file under `directory` (in a worker process)."""
    run = RUNS[name]
    db = directory / f"{name}.db"
    summary = asyncio.run(simulate(run.scenario, run.sim, f"sqlite:///{db}", directory / f"{name}-state"))
    return db, summary


def observations(db: Path) -> list[Observation]:
    """The stored measurements as detection input, in the order they started."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT vantage, target, started_at, verdict, failure FROM measurements ORDER BY started_at, id"
        ).fetchall()
    return [
        Observation(v, t, dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC), verdict, failure)
        for v, t, at, verdict, failure in rows
    ]


EPISODE_MIN_SPAN = 60.0  # confirm_interval 30 s x confirm_count 2, as Config.episode_min_span


def episodes(db: Path) -> list[Episode]:
    """Episodes detected from the stored rows, as `curfew analyze --rebuild` would find them."""
    # As the daemon and `curfew analyze --rebuild` run it: the run must span the confirmations.
    return detect(observations(db), min_span=EPISODE_MIN_SPAN)
