"""The free-descriptor estimate the metrics server checks on every accept, without a /proc walk each time."""

from __future__ import annotations

import pytest

from probe.metrics import admission
from probe.metrics.admission import FreeDescriptors


def test_counted_at_most_once_per_period_and_lowered_by_what_the_server_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "soft_nofile", lambda: 1024)
    counts = iter([900, 700])
    calls: list[int] = []

    def count() -> int:
        calls.append(1)
        return next(counts)

    free = FreeDescriptors(every=1.0, count=count)
    assert free(10.0) == 900
    free.took(20)  # a low number: the estimate goes down by one
    assert free(10.5) == 899 and len(calls) == 1
    free.took(1000)  # number 1000 in use means 0..999 are: at most 23 left below 1024
    assert free(10.9) == 23
    assert free(11.0) == 700 and len(calls) == 2  # counted again after the period


def test_nothing_to_lower_when_it_cannot_be_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "soft_nofile", lambda: 1024)
    free = FreeDescriptors(count=lambda: None)
    assert free(0.0) is None
    free.took(5)
    assert free(0.1) is None
