"""A simulation measures the same whatever `--jobs`: its groups (parts of the targets) share
no state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from probe.lab import Scenario, parse_scenario
from probe.lab.shards import deal, run
from probe.lab.simulate import Group, Simulation, groups_of
from tests.simulate.conftest import rows

UTC = dt.UTC
# What a user compares: when, which pair, what was seen and concluded. Not the row ids, the
# URLs (the lab's ports are free ports) nor real step durations and rates.
CONTENT = (
    "SELECT started_at, vantage, target, verdict, failure, operation, blocking, http_status, "
    "tls_issuer, local_day, local_hour FROM measurements"
)


def two_vantages() -> Scenario:
    """Two censored vantages with different evenings, a control vantage, two targets and a
    control target."""
    return parse_scenario(
        {
            "name": "two-evenings",
            "timezone": "UTC",
            "dns": {"listen": "127.0.0.1:0"},
            "vantages": [
                {"name": "north", "address": "127.0.0.2"},
                {"name": "south", "address": "127.0.0.3"},
                {"name": "control", "address": "127.0.0.9", "control": True},
            ],
            "targets": [
                {"name": "site", "hosts": ["site.lab"], "address": "127.0.4.1", "port": 0, "bulk": False},
                {"name": "other", "hosts": ["other.lab"], "address": "127.0.4.3", "port": 0, "bulk": False},
                {
                    "name": "wiki",
                    "hosts": ["wiki.lab"],
                    "address": "127.0.4.2",
                    "port": 0,
                    "bulk": False,
                    "control": True,
                },
            ],
            "rules": [
                {"action": "tls_reset", "vantages": ["north"], "targets": ["site"],
                 "when": {"daily": "20:00-21:00"}},
                {"action": "dns_nxdomain", "vantages": ["south"], "names": ["site.lab"],
                 "when": {"daily": "21:00-22:00"}},
                {"action": "http_blockpage", "vantages": ["north", "south"], "targets": ["other"],
                 "when": {"daily": "19:00-20:00"}},
            ],
        }
    )  # fmt: skip


def test_groups_split_the_targets_and_are_dealt_to_jobs() -> None:
    groups = groups_of(two_vantages(), Simulation(days=1))
    # The control target goes with the first group (the second measures it too, unstored); the
    # others go, heaviest first, to the group with the least work: here all weigh the same.
    assert groups == [Group(0, ("site", "wiki")), Group(1, ("other",))]
    assert deal(groups, 1) == [groups]
    assert deal(groups, 2) == [[groups[0]], [groups[1]]]
    assert deal(groups, 8) == [[groups[0]], [groups[1]]]
    # One target besides the controls: one group (a second would only measure them again).
    only_site = groups_of(two_vantages(), Simulation(days=1, targets=("site",), vantages=("south",)))
    assert only_site == [Group(0, ("site", "wiki"))]


@pytest.mark.parametrize(
    ("sim", "named"),
    [
        (Simulation(days=1, vantages=("west",)), "unknown vantage 'west'"),
        (Simulation(days=1, targets=("nowhere",)), "unknown target 'nowhere'"),
    ],
)
def test_unknown_names_are_refused_before_anything_runs(sim: Simulation, named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named}$"):
        sim.check(two_vantages())


def test_one_job_and_two_jobs_measure_the_same(tmp_path: Path) -> None:
    # Four days: from the fourth, the inferred evening schedules add watch windows, which a
    # split by days used to lose in its second half.
    sim = Simulation(days=4, start=dt.datetime(2019, 5, 20, 0, 7, tzinfo=UTC), interval=1800)
    tables = {}
    for jobs in (1, 2):
        db = tmp_path / f"jobs{jobs}.db"
        summary = run(two_vantages(), sim, f"sqlite:///{db}", tmp_path / f"state{jobs}", jobs=jobs)
        tables[jobs] = sorted(tuple(r.values()) for r in rows(db, CONTENT))
        assert len(tables[jobs]) == summary.measurements
        assert summary.watches > 0  # the case that used to differ is in the comparison
    assert tables[1] == tables[2]
    # Each pair's measurements once: the control target is measured by both groups (the
    # second group's verdicts need it) and stored by the first only.
    keys = [(r[0], r[1], r[2]) for r in tables[1]]
    assert len(keys) == len(set(keys))
    assert {r[1] for r in tables[1]} == {"north", "south", "control"}
    assert {r[2] for r in tables[1]} == {"site", "other", "wiki"}
    # At a base instant every vantage measured every target, wiki included.
    first = min(r[0] for r in tables[1])
    assert len([r for r in tables[1] if r[0] == first]) == 3 * 3
