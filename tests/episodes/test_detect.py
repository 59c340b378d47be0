"""Episode detection on virtual time: each test is a stream of verdicts, one every 5 minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from probe.episodes import Episode, Observation, Tracker, detect

T0 = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)  # 20:00 in Almaty (UTC+6 then)
STEP = timedelta(minutes=5)


def at(i: float) -> datetime:
    return T0 + i * STEP


def stream(
    verdicts: str, target: str = "youtube", vantage: str = "kz", start: float = 0
) -> list[Observation]:
    """One observation per code, 5 minutes apart: . ok, T tls_blocked (reset), C tcp_blocked,
    D dns_blocked, V vantage_down, ? inconclusive, X target_down."""
    codes = {
        ".": ("ok", None),
        "T": ("tls_blocked", "connection_reset"),
        "C": ("tcp_blocked", "generic_timeout_error"),
        "D": ("dns_blocked", "dns_nxdomain_error"),
        "V": ("vantage_down", "dns_servfail_error"),
        "?": ("inconclusive", "connection_reset"),
        "X": ("target_down", "connection_refused"),
    }
    return [
        Observation(vantage, target, at(start + i), *codes[c]) for i, c in enumerate(verdicts) if c != " "
    ]


def spans(episodes: list[Episode]) -> list[tuple[str | None, float, float | None, str, int]]:
    """(target, start, end, verdict, probes) with times in steps from T0."""

    def steps(t: datetime | None) -> float | None:
        return None if t is None else (t - T0) / STEP

    return [(e.target, steps(e.started_at), steps(e.ended_at), e.verdict, e.probes) for e in episodes]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ("....", []),
        ("..T..", []),  # one lost probe is not an episode
        ("..T.T.T..", []),  # nor are lost probes that never come two in a row
        ("..TT..", [("youtube", 1.5, 3.5, "tls_blocked", 2)]),
        ("..TTTTT..", [("youtube", 1.5, 6.5, "tls_blocked", 5)]),
        ("..TT.T..", [("youtube", 1.5, 5.5, "tls_blocked", 3)]),  # one ok inside does not close it
        ("..T?T..", [("youtube", 1.5, 4.5, "tls_blocked", 2)]),  # inconclusive does not break the run
        ("..TT?..", [("youtube", 1.5, 4, "tls_blocked", 2)]),  # ... nor close it
        ("..TTXX..", [("youtube", 1.5, 4.5, "tls_blocked", 2)]),  # target_down neither
        ("..TTT", [("youtube", 1.5, None, "tls_blocked", 3)]),  # still open
        ("TT..", [("youtube", 0, 1.5, "tls_blocked", 2)]),  # dark from the first measurement
        ("..TT....TT..", [("youtube", 1.5, 3.5, "tls_blocked", 2), ("youtube", 7.5, 9.5, "tls_blocked", 2)]),
        ("..CTTTC..", [("youtube", 1.5, 6.5, "tls_blocked", 5)]),  # mixed: the dominant technique wins
        ("..CCTT..", [("youtube", 1.5, 5.5, "tcp_blocked", 4)]),  # a tie: the one seen first
        ("..CT..", []),  # two failures that disagree are noise (loss), not a censor
        ("..DTDC..", []),  # ... however many, as long as no technique repeats
        (
            "..DTT..",
            [("youtube", 1.5, 4.5, "tls_blocked", 3)],
        ),  # a repeat opens it; onset from the first dark
    ],
)
def test_hysteresis(verdicts: str, expected: list[tuple[str, float, float | None, str, int]]) -> None:
    assert spans(detect(stream(verdicts))) == expected


def test_onset_and_offset_bounds() -> None:
    [episode] = detect(stream("..TTT.."))
    assert (episode.onset_after, episode.onset_before) == (at(1), at(2))
    assert (episode.offset_after, episode.offset_before) == (at(4), at(5))
    assert episode.started_at == at(1.5) and episode.ended_at == at(4.5)
    assert (episode.verdict, episode.failure, episode.scope) == ("tls_blocked", "connection_reset", "target")


def test_reprobing_narrows_the_bounds() -> None:
    # A 5-minute interval, with re-probes 30 s after each change (as the daemon does).
    rows = [
        Observation("kz", "youtube", at(0), "ok"),
        Observation("kz", "youtube", at(1), "tls_blocked", "connection_reset"),
        Observation("kz", "youtube", at(1) + timedelta(seconds=30), "tls_blocked", "connection_reset"),
        Observation("kz", "youtube", at(2), "ok"),
        Observation("kz", "youtube", at(2) + timedelta(seconds=30), "ok"),
    ]
    [episode] = detect(rows)
    assert episode.offset_before is not None and episode.offset_after is not None
    assert episode.offset_before - episode.offset_after == timedelta(seconds=270)
    assert episode.onset_before - episode.onset_after == STEP  # type: ignore[operator]


def test_the_other_blocked_verdicts_make_episodes() -> None:
    for verdict in ("dns_blocked", "tcp_blocked", "tls_blocked", "tls_mitm", "http_blocked", "throttled"):
        rows = [
            Observation("kz", "youtube", at(i), v) for i, v in enumerate(["ok", verdict, verdict, "ok", "ok"])
        ]
        assert [e.verdict for e in detect(rows)] == [verdict]


def test_vantage_shutdown_is_one_episode_not_one_per_target() -> None:
    rows = (
        stream("..VVVV..", target="facebook")
        + stream("..VVVV..", target="youtube", start=0.2)
        + stream("..VVVV..", target="control", start=0.4)
    )
    assert spans(detect(rows)) == [(None, 1.7, 5.7, "vantage_down", 12)]


def test_one_lost_round_is_not_a_shutdown() -> None:
    rows = stream("..V..", target="facebook") + stream("..V..", target="youtube", start=0.2)
    assert detect(rows) == []


def test_a_shutdown_suspends_the_targets_episodes() -> None:
    # youtube is blocked, then the whole vantage goes down, then youtube is still blocked.
    rows = stream("..TTVVVVTT..", target="youtube") + stream("....VVVV....", target="control", start=0.5)
    # The shutdown closes once youtube has shown the vantage working twice (at 8 and 9); the
    # block seen at 8, before that, is not counted for youtube.
    assert spans(detect(rows)) == [
        ("youtube", 1.5, 9.5, "tls_blocked", 3),
        (None, 3.75, 7.75, "vantage_down", 8),
    ]


def test_shutdown_measurements_neither_open_nor_close_a_target() -> None:
    # The target's own verdicts during the shutdown are vantage_down: no youtube episode.
    rows = stream("..VVVV..", target="youtube") + stream("..VVVV..", target="control", start=0.5)
    assert [e.scope for e in detect(rows)] == ["vantage"]


def test_overlapping_targets_are_separate_episodes() -> None:
    rows = stream("..TTTTTT..", target="youtube") + stream("....DDD....", target="facebook", start=0.1)
    assert sorted(spans(detect(rows)), key=str) == [
        ("facebook", 3.6, 6.6, "dns_blocked", 3),
        ("youtube", 1.5, 7.5, "tls_blocked", 6),
    ]


def test_vantages_are_separate() -> None:
    rows = stream("..TT..", vantage="kz-almaty") + stream("......", vantage="kz-astana")
    assert [e.vantage for e in detect(rows)] == ["kz-almaty"]


def test_tracker_events_and_open_episodes() -> None:
    tracker = Tracker()
    kinds = [[e.kind for e in tracker.observe(o)] for o in stream("..TTT..")]
    assert kinds == [[], [], [], ["opened"], ["updated"], [], ["closed"]]
    assert tracker.open_episodes() == []
    tracker.observe(Observation("kz", "youtube", at(10), "tls_blocked"))
    [opened] = tracker.observe(Observation("kz", "youtube", at(11), "tls_blocked"))
    assert tracker.open_episodes() == [opened.episode]


def test_the_batch_function_equals_the_live_tracker() -> None:
    rows = stream("..TT.TTC..T..TTT", target="youtube") + stream(".VV..VVV..", target="control", start=0.3)
    rows.sort(key=lambda r: r.started_at)
    tracker = Tracker()
    live: dict[object, Episode] = {}
    for row in rows:
        for event in tracker.observe(row):
            live[event.episode.key] = event.episode
    assert list(live.values()) == detect(reversed(rows))


def test_open_after_1_and_close_after_3() -> None:
    assert spans(detect(stream("..T..T...."), open_after=1, close_after=3)) == [
        ("youtube", 1.5, 5.5, "tls_blocked", 2)
    ]


def test_counts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Tracker(open_after=0)


def test_a_run_must_span_min_span_before_it_is_an_episode() -> None:
    seconds = [0, 30, 60, 90]  # re-probes every 30 s
    two = [
        Observation("kz", "youtube", T0 + timedelta(seconds=s), v)
        for s, v in zip(seconds, ["ok", "T", "T", "ok"], strict=True)
    ]
    two = [
        o
        if o.verdict == "ok"
        else Observation(o.vantage, o.target, o.started_at, "tls_blocked", "connection_reset")
        for o in two
    ]
    assert detect(two, min_span=60) == []  # two lost re-probes 30 s apart: noise
    assert len(detect(two)) == 1  # without the span rule it would open
    three = [
        *two[:3],
        Observation("kz", "youtube", T0 + timedelta(seconds=90), "tls_blocked", "connection_reset"),
    ]
    (episode,) = detect(three, min_span=60)
    assert episode.onset_before == T0 + timedelta(
        seconds=30
    )  # the onset still counts from the first dark probe
