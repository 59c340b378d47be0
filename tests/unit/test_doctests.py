"""The examples in the docstrings of probe/ are run: they are documentation that must stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import probe

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(probe.__path__, "probe.")
    if not m.name.startswith("probe.migrations")  # Alembic's env.py runs on import
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0, f"{name}: {failures} docstring example(s) failed (details above)"
