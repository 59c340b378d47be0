"""Detection accuracy on simulated weeks: the real probe engine against the lab on a virtual
clock, episodes detected from the stored rows with `probe.episodes.detect`, compared with the
scenario's true windows (`probe.lab.accuracy`). Figures are printed (`pytest -s`) and put in
the assertion messages.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from probe.episodes.model import Episode
from probe.lab.accuracy import match, spread, true_windows
from probe.lab.simulate import Summary
from tests.accuracy.conftest import Simulated
from tests.accuracy.scenarios import ALMATY, RUNS, episodes, observations

pytestmark = pytest.mark.timeout(600)


def result(simulated: Simulated, name: str) -> tuple[Path, Summary]:
    return simulated[name].result()


def test_onset_and_offset_median_error_within_30_s_with_watch_windows(simulated: Simulated) -> None:
    db, summary = result(simulated, "evening")
    run = RUNS["evening"]
    found = episodes(db)
    span = (summary.start, summary.end)
    windows = [w for rule in run.scenario.rules for w in true_windows(rule, ALMATY, *span)]
    matches, false = match([e for e in found if e.target == "site"], windows, span)
    onset = spread(m.onset_error for m in matches if m.onset_error is not None)
    offset = spread(m.offset_error for m in matches if m.offset_error is not None)
    figures = f"onset {onset}; offset {offset}; {summary.watches} watch-window probes"
    print(f"\n14 days, 5-minute base interval, re-probing + watch windows: {figures}")
    for m in matches:
        print(
            f"  {m.truth[0]:%m-%d %H:%M:%S} UTC  onset {m.onset_error:+.0f} s  offset {m.offset_error:+.0f} s"
        )
    assert len(windows) == 14 and all(m.episode is not None for m in matches), figures
    assert false == [] and {e.target for e in found} == {"site"}, false
    assert onset.count == offset.count == 14, figures
    assert onset.median <= 30 and offset.median <= 30, figures
    assert summary.watches > 0


def test_the_stripe_stays_at_20h_local_across_the_offset_change(simulated: Simulated) -> None:
    # Asia/Almaty: UTC+6 until 2024-03-01, UTC+5 since; the run covers 2024-02-22 .. 03-06.
    db, _ = result(simulated, "evening")
    zone = ZoneInfo(ALMATY)
    stripe = [e for e in episodes(db) if e.target == "site"]
    assert len(stripe) == 14
    for e in stripe:
        assert e.ended_at is not None
        start, end = e.started_at.astimezone(zone), e.ended_at.astimezone(zone)
        # The censor switches a few seconds to minutes after 20:00 and 22:10 (switch_delay).
        assert dt.time(19, 55) <= start.time() <= dt.time(20, 10), start
        assert dt.time(22, 5) <= end.time() <= dt.time(22, 20), end
        # ... which is 14:00 UTC before the change and 15:00 UTC after it.
        utc_hour = 14 if start.date() < dt.date(2024, 3, 1) else 15
        minutes = e.started_at.hour * 60 + e.started_at.minute - utc_hour * 60
        assert -5 <= minutes <= 10, (start, e.started_at)


def test_three_percent_loss_for_14_days_makes_no_more_episodes_than_chance(simulated: Simulated) -> None:
    db, summary = result(simulated, "loss")
    rows = observations(db)
    failed = Counter(o.verdict for o in rows if o.failure is not None)
    found = episodes(db)
    kinds = Counter((e.vantage, e.target, e.verdict, e.probes) for e in found)
    figures = (
        f"{len(rows)} measurements, failed by verdict {dict(failed)}; {len(found)} episodes {dict(kinds)}"
    )
    print(f"\n14 days, 3% loss: {figures}")
    assert summary.end - summary.start == dt.timedelta(days=14)
    assert sum(failed.values()) > 100  # the loss did happen
    # An episode opens on a change seen confirm_count + 1 times in a row, 60 s apart at least:
    # with independent loss at rate p a probe starts such a run with probability about p**3,
    # so 14 days of base probes expect p**3 * len(rows) chance episodes (~0.4 at 3%), each of
    # exactly that many probes. Without the rules that stop loss from opening episodes it
    # was about 50; never more than chance allows, and never a longer one.
    p = sum(failed.values()) / len(rows)
    assert len(found) <= max(2.0, 3 * p**3 * len(rows)), figures
    assert all(e.probes <= 3 for e in found), figures


def test_evening_congestion_is_not_throttling(simulated: Simulated) -> None:
    db, _ = result(simulated, "congestion")
    zone = ZoneInfo(ALMATY)
    rows = [o for o in observations(db) if o.vantage == "censored"]
    evening = [o for o in rows if dt.time(20) <= o.started_at.astimezone(zone).time() < dt.time(23)]
    verdicts = Counter(o.verdict for o in evening if o.target == "site")
    found = episodes(db)
    print(
        f"\ncongestion 20:00-23:00 on site and wiki: evening verdicts of site {dict(verdicts)}, "
        f"episodes {found}"
    )
    assert len(evening) > 50
    assert verdicts["throttled"] * 2 < sum(verdicts.values()), verdicts
    assert [e for e in found if e.verdict == "throttled"] == []
    assert found == []


def test_a_vantage_shutdown_is_one_vantage_episode(simulated: Simulated) -> None:
    db, summary = result(simulated, "shutdown")
    zone = ZoneInfo(ALMATY)
    found = episodes(db)
    print(f"\nblackhole 01:00-03:00 daily for 3 days: {[describe(e, zone) for e in found]}")
    shutdowns = [e for e in found if e.target is None]
    assert [e for e in found if e.target is not None] == []
    assert len(shutdowns) == 3 and {e.vantage for e in shutdowns} == {"censored"}
    for e in shutdowns:
        assert e.ended_at is not None and e.verdict == "vantage_down"
        assert abs(e.started_at.astimezone(zone).hour * 60 + e.started_at.astimezone(zone).minute - 60) <= 5
        assert abs((e.ended_at - e.started_at).total_seconds() - 7200) <= 600
    assert summary.verdicts["vantage_down"] > 0


def describe(e: Episode, zone: ZoneInfo) -> str:
    end = "open" if e.ended_at is None else f"{e.ended_at.astimezone(zone):%H:%M:%S}"
    return f"{e.vantage}/{e.target or '*'} {e.started_at.astimezone(zone):%m-%d %H:%M:%S}-{end} {e.verdict}"
