"""The package's simulations, made once per session in two worker processes (one per core).

Every run is submitted at the first request, longest first, so the two 14-day runs overlap;
each test waits for the run it reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from probe.lab.simulate import Summary
from tests.accuracy.scenarios import RUNS, simulate_run

Simulated = dict[str, "Future[tuple[Path, Summary]]"]


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulated]:
    directory = tmp_path_factory.mktemp("accuracy")
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        yield {name: pool.submit(simulate_run, name, directory) for name in RUNS}
