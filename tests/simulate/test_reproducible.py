"""A simulation measures the same whatever `--jobs`: its groups (parts of the pairs) share
nothing but the controls an earlier group lends a later one."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from probe.lab import Scenario, parse_scenario
from probe.lab.shards import deal, run
from probe.lab.simulate import PARTS, Simulation, groups_of
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


def test_groups_split_the_pairs_and_are_dealt_to_jobs() -> None:
    groups = groups_of(two_vantages(), Simulation(days=1))
    # The control target's pairs go to the first group, which lends them; here the other
    # targets are split too: their control-vantage pairs lent from the first group, their
    # censored pairs in the second, which has the extra probes of the evenings.
    assert [sorted(g.pairs) for g in groups] == [
        [
            ("control", "other"),
            ("control", "site"),
            ("control", "wiki"),
            ("north", "wiki"),
            ("south", "wiki"),
        ],
        [("north", "other"), ("north", "site"), ("south", "other"), ("south", "site")],
    ]
    assert deal(groups, 1) == [groups]
    assert deal(groups, 2) == [[groups[0]], [groups[1]]]
    assert deal(groups, 8) == [[groups[0]], [groups[1]]]
    # One target besides the controls: it goes whole to the second group, which borrows the
    # control target from the first, so the two still share the work.
    only_site = groups_of(two_vantages(), Simulation(days=1, targets=("site",), vantages=("south",)))
    assert [sorted(g.pairs) for g in only_site] == [
        [("control", "wiki"), ("south", "wiki")],
        [("control", "site"), ("south", "site")],
    ]


@pytest.mark.parametrize("vantages", [None, ("kz-almaty",), ("kz-mobile", "kz-astana")])
@pytest.mark.parametrize("targets", [None, ("youtube",), ("news", "facebook")])
def test_every_pair_is_owned_once_and_a_control_lent_only_forward(
    vantages: tuple[str, ...] | None, targets: tuple[str, ...] | None
) -> None:
    from probe.lab import load_scenario

    scenario = load_scenario("kazakhstan-2019")
    sim = Simulation(days=1, vantages=vantages, targets=targets)
    groups = groups_of(scenario, sim)
    owner = {pair: g.index for g in groups for pair in g.pairs}
    assert sum(len(g.pairs) for g in groups) == len(owner)  # nobody owns a pair twice
    kept_vantages = [v for v in scenario.vantages if vantages is None or v.control or v.name in vantages]
    probed = [t for t in scenario.targets if t.probe and (targets is None or t.control or t.name in targets)]
    assert set(owner) == {(v.name, t.name) for v in kept_vantages for t in probed}
    assert [g.index for g in groups] == list(range(len(groups))) and len(groups) <= PARTS
    for (vantage, target), index in owner.items():
        if scenario.target(target).control:
            assert index == 0  # every group needs it, and only the first lends to all
        elif not scenario.vantage(vantage).control:
            # A censored pair's control at the control vantage is its own group's or lent to it.
            assert owner[("control", target)] <= index


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
    # Each pair's measurements once: a control lent by the first group is not measured again
    # by the second, and one the second measured itself (none was lent) is stored once.
    keys = [(r[0], r[1], r[2]) for r in tables[1]]
    assert len(keys) == len(set(keys))
    assert {r[1] for r in tables[1]} == {"north", "south", "control"}
    assert {r[2] for r in tables[1]} == {"site", "other", "wiki"}
    # At a base instant every vantage measured every target, wiki included.
    first = min(r[0] for r in tables[1])
    assert len([r for r in tables[1] if r[0] == first]) == 3 * 3


@pytest.mark.timeout(60)
def test_a_group_that_fails_in_its_worker_ends_the_run_and_nobody_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe.lab import lending, shards

    clear = lending.clear

    def clear_but_leave_a_stale_ledger(directory: Path) -> None:
        # The first group's worker cannot open its ledger (FileExistsError) and fails; the
        # second finds that empty file and would wait for it for ever.
        clear(directory)
        lending.ledger_path(directory, 0).touch()

    monkeypatch.setattr(shards.lending, "clear", clear_but_leave_a_stale_ledger)
    sim = Simulation(days=1, start=dt.datetime(2019, 5, 20, tzinfo=UTC), interval=1800)
    began = dt.datetime.now(UTC)
    with pytest.raises(RuntimeError, match=r"^job 0: FileExistsError"):
        run(two_vantages(), sim, f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "state", jobs=2)
    assert (dt.datetime.now(UTC) - began).total_seconds() < 50
    assert not (tmp_path / "state" / "lending").exists()  # the ledgers go with the run


@pytest.mark.timeout(60)
def test_a_database_that_cannot_be_made_stops_the_workers_already_started(tmp_path: Path) -> None:
    # The workers start while the parent makes the tables; when it cannot, they never run.
    before = set(_spawned_children())
    sim = Simulation(days=1, start=dt.datetime(2019, 5, 20, tzinfo=UTC), interval=1800)
    (tmp_path / "a file").write_text("not a directory")
    url = f"sqlite:///{tmp_path / 'a file' / 'x.db'}"
    began = time.monotonic()
    with pytest.raises(FileExistsError):  # the database's directory: not a worker's error
        run(two_vantages(), sim, url, tmp_path / "state", jobs=2)
    assert time.monotonic() - began < 40
    assert set(_spawned_children()) <= before


def test_a_worker_whose_parent_died_before_the_go_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    # A parent killed while it made the tables never says "go": its workers must not wait on.
    import multiprocessing

    from probe.lab import shards

    class Never:
        def wait(self, timeout: float) -> bool:
            return False

    class Dead:
        def is_alive(self) -> bool:
            return False

    monkeypatch.setattr(multiprocessing, "parent_process", lambda: Dead())
    assert shards._wait_for(Never()) is False
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: None)
    ready = multiprocessing.get_context("spawn").Event()
    ready.set()
    assert shards._wait_for(ready) is True


def _spawned_children() -> list[int]:
    """This process's children started by multiprocessing's spawn (its workers), oldest first."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
    return sorted(found)


@pytest.mark.timeout(90)
def test_a_worker_killed_without_a_word_ends_the_run_and_nobody_waits_for_it(tmp_path: Path) -> None:
    # Long enough never to end before the kill (a few seconds in, it ends the run).
    sim = Simulation(days=60, start=dt.datetime(2019, 5, 20, tzinfo=UTC), interval=600)
    killed: list[int] = []
    before = set(_spawned_children())  # another test's, if any: not ours to kill

    def kill_the_first_group() -> None:
        ledger = tmp_path / "state" / "lending" / "group0.ledger"
        for _ in range(600):  # until the first group has lent something (at most 60 s)
            if ledger.exists() and ledger.stat().st_size > 0:
                break
            time.sleep(0.1)
        workers = [pid for pid in _spawned_children() if pid not in before]
        for _ in range(100):  # both started (at most 10 s more)
            if len(workers) == 2:
                break
            time.sleep(0.1)
            workers = [pid for pid in _spawned_children() if pid not in before]
        if len(workers) == 2:
            os.kill(workers[0], signal.SIGKILL)  # the first group: the second borrows from it
            killed.append(workers[0])

    killer = threading.Thread(target=kill_the_first_group)
    killer.start()
    try:
        with pytest.raises(RuntimeError) as raised:
            run(two_vantages(), sim, f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "state", jobs=2)
    finally:
        killer.join(timeout=60)
    assert killed and str(raised.value) == "job 0: died (-9)"
    assert set(_spawned_children()) <= before  # the second was stopped, not left waiting


def test_many_targets_are_dealt_greedily_and_still_each_pair_once() -> None:
    from probe.lab.simulate import SEARCHED, _cost, _Way

    targets = [
        {
            "name": f"t{i}",
            "hosts": [f"t{i}.lab"],
            "address": f"127.0.5.{i + 1}",
            "port": 0,
            "bulk": i % 2 == 0,
        }
        for i in range(SEARCHED + 4)
    ]
    scenario = parse_scenario(
        {
            "name": "many",
            "timezone": "UTC",
            "dns": {"listen": "127.0.0.1:0"},
            "vantages": [
                {"name": "north", "address": "127.0.0.2"},
                {"name": "control", "address": "127.0.0.9", "control": True},
            ],
            "targets": [*targets, {"name": "wiki", "hosts": ["wiki.lab"], "address": "127.0.5.99", "port": 0,
                                   "control": True}],
        }
    )  # fmt: skip
    groups = groups_of(scenario, Simulation(days=1))
    owner = {pair: g.index for g in groups for pair in g.pairs}
    assert sum(len(g.pairs) for g in groups) == len(owner) == 2 * (SEARCHED + 5)
    assert owner[("north", "wiki")] == owner[("control", "wiki")] == 0
    assert all(owner[("control", f"t{i}")] <= owner[("north", f"t{i}")] for i in range(SEARCHED + 4))
    # Dealt heaviest first, the busier group has at most one target's work more than half.
    load = [0.0, 0.0]
    for g in groups:
        for vantage, target in g.pairs:
            load[g.index] += _cost(scenario.target(target)) * (1 if vantage == "control" else 1.25)
    heaviest = max(_cost(scenario.target(f"t{i}")) for i in range(SEARCHED + 4)) * 2.25
    assert max(load) - sum(load) / 2 <= heaviest
    assert _Way((("c", "t"),), (("n", "t"),), (1.0, 1.0)).split
