"""Measurements with a key missing or of the wrong type never end an import: each is either
judged or reported as a bad line (what `importer.judged` catches)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from probe.ooni.importer import Options, Summary, judged
from probe.ooni.read import Line
from tests.ooni.builders import measurement

ODD_VALUES: tuple[Any, ...] = (None, "x", 5, -1.5, True, [], {}, ["x"], [5], [None], {"x": 1})


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a JSON value (list items: the first only)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list) and value:
        yield (*prefix, 0)
        yield from _paths(value[0], (*prefix, 0))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@pytest.mark.parametrize("technique", ["mitm", "redirect_blocked", "dns", "captcha"])
@pytest.mark.parametrize("lte", [False, True], ids=["classic", "lte"])
def test_any_key_with_any_odd_value_is_judged_or_a_bad_line(technique: str, lte: bool) -> None:
    base = measurement(technique, lte=lte)
    paths = [p for p in _paths(base) if "peer_certificates" not in p or len(p) < 6]
    summary = Summary()
    problems: list[str] = []
    for path in paths:
        for value in ODD_VALUES:
            doc = copy.deepcopy(base)
            _set(doc, path, value)
            judged(Line("fuzz", 1, doc), Options(), summary, problems.append)
    assert summary.read == summary.imported + summary.bad + summary.other_tests
    assert summary.imported > 0
