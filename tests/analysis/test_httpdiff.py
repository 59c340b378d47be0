"""OONI ts-017 HTTP comparison heuristics, one row per rule."""

from __future__ import annotations

import pytest

from probe.analysis.httpdiff import (
    body_proportion,
    compare_http,
    headers_match,
    redirect_host,
    title_match,
)
from probe.model import HttpObservation

from .builders import http

REAL = http("http://news.example/")


def test_identical_responses_are_no_diff() -> None:
    comparison = compare_http(REAL, REAL)
    assert comparison.status_code_match is True
    assert comparison.body_length_match is True
    assert comparison.headers_match is True
    assert comparison.title_match is True
    assert comparison.http_diff is False


@pytest.mark.parametrize(
    ("measured", "control", "expected"),
    [
        (71, 100, 0.71),
        (70, 100, 0.7),
        (100, 70, 0.7),
        (0, 0, 1.0),
        (0, 5000, 0.0),
    ],
)
def test_body_proportion(measured: int, control: int, expected: float) -> None:
    assert body_proportion(http(body_length=measured), http(body_length=control)) == pytest.approx(expected)


def test_body_proportion_threshold_is_strictly_above_point_seven() -> None:
    assert compare_http(http(body_length=71), http(body_length=100)).body_length_match is True
    assert compare_http(http(body_length=70), http(body_length=100)).body_length_match is False


def test_truncated_bodies_are_not_compared() -> None:
    truncated = HttpObservation(
        url="http://news.example/", address=None, t0=0, t=1, status=200, body_length=1024, body_truncated=True
    )
    assert body_proportion(truncated, REAL) is None
    assert compare_http(truncated, REAL).body_length_match is None


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        # Only common headers on both sides: the same (empty) set of uncommon ones.
        ((("Date", "x"), ("Server", "nginx")), (("date", "y"),), True),
        ((("X-FB-Debug", "a"),), (("x-fb-debug", "b"), ("X-Other", "c")), True),
        ((("X-Squid-Error", "ERR_ACCESS_DENIED"),), (("X-FB-Debug", "b"),), False),
        ((), (("X-FB-Debug", "b"),), False),
    ],
)
def test_headers_match(
    mine: tuple[tuple[str, str], ...], theirs: tuple[tuple[str, str], ...], expected: bool
) -> None:
    assert headers_match(http(headers=mine), http(headers=theirs)) is expected


@pytest.mark.parametrize(
    ("mine", "theirs", "expected"),
    [
        ("Example Domain", "EXAMPLE domain", True),
        # Words shorter than 5 characters are ignored.
        ("The News of Day", "A New Day", True),
        ("Access denied", "Example Domain", False),
        ("Example Domain extra", "Example Domain", False),
        (None, "Example Domain", None),
        ("Example Domain", "", None),
    ],
)
def test_title_match(mine: str | None, theirs: str | None, expected: bool | None) -> None:
    assert title_match(mine, theirs) is expected


def test_status_differs_is_a_diff_even_if_everything_else_matches() -> None:
    assert compare_http(http(status=403), REAL).http_diff is True


@pytest.mark.parametrize(
    ("kwargs", "diff"),
    [
        # Status matches and one other heuristic matches: not a diff.
        ({"body_length": 1000, "title": "Blocked", "headers": (("X-FB-Debug", "z"),)}, False),
        ({"body_length": 1000, "title": "Facebook - log in or sign up", "headers": ()}, False),
        ({"body_length": 59_000, "title": "Blocked", "headers": ()}, False),
        # Status matches but nothing else does: a 200 blockpage.
        ({"body_length": 1000, "title": "Access restricted", "headers": (("X-Censor", "1"),)}, True),
    ],
)
def test_status_match_needs_one_more_match(kwargs: dict[str, object], diff: bool) -> None:
    measured = http(**kwargs)  # type: ignore[arg-type]
    assert compare_http(measured, REAL).http_diff is diff


def test_control_server_error_makes_status_incomparable() -> None:
    comparison = compare_http(REAL, http(status=503))
    assert comparison.status_code_match is None
    assert comparison.http_diff is None


def test_failed_request_cannot_be_compared() -> None:
    with pytest.raises(ValueError, match="two responses"):
        compare_http(http(failure="connection_reset"), REAL)


@pytest.mark.parametrize(
    ("status", "location", "expected"),
    [
        (302, "http://warning.lab/", "warning.lab"),
        (301, "/login", "news.example"),
        (302, "https://WWW.News.Example/x", "www.news.example"),
        (200, "http://warning.lab/", None),
        (302, None, None),
    ],
)
def test_redirect_host(status: int, location: str | None, expected: str | None) -> None:
    headers = (("Location", location),) if location else ()
    assert redirect_host(http("http://news.example/", status=status, headers=headers)) == expected
