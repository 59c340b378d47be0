"""`probe.daemon.run.run`, the daemon's entry: it runs on the config its caller loaded.

`curfew run` loads the file, checks it (preflight) and locks its data_dir before the daemon
starts; loading it a second time could pick up an edit made in between and run on another
data_dir than the one locked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probe.config import Config, parse_config
from probe.daemon import run as run_module


class NoTimer:
    """Stands in for the exit-anyway timer, which would end the test process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.daemon = False

    def start(self) -> None:
        pass


def a_config(data_dir: Path) -> Config:
    return parse_config(
        {
            "data_dir": str(data_dir),
            "vantages": [{"name": "here", "timezone": "UTC"}],
            "targets": [{"name": "site", "url": "https://127.0.0.1:9/"}],
        },
        "<test>",
    )


async def test_the_daemon_runs_on_the_config_it_was_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran_with: list[Config] = []

    async def fake_run(self: run_module.Daemon) -> int:
        ran_with.append(self.config)
        return 0

    def loaded_again(path: Path) -> Config:
        raise AssertionError(f"{path} loaded a second time")

    monkeypatch.setattr(run_module.Daemon, "run", fake_run)
    monkeypatch.setattr(run_module, "load_config", loaded_again)
    monkeypatch.setattr(run_module.threading, "Timer", NoTimer)
    given = a_config(tmp_path / "locked")
    assert await run_module.run(tmp_path / "curfew.yaml", config=given) == 0
    assert ran_with == [given]
