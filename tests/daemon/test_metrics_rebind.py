"""Moving the metrics endpoint on SIGHUP when no address can be bound: the old one, or none.

The end-to-end cases (a busy new address, the old one kept) are in test_reload.py; this is the
case a subprocess cannot stage: the new address refused and the old one taken while it was
free. The daemon must log it and go on (no traceback out of the reload), and try again on the
next reload.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from probe.config import parse_config
from probe.daemon import run as run_module
from probe.daemon.run import Daemon
from probe.metrics import Metrics


def config(listen: str) -> Any:
    return parse_config(
        {
            "metrics": {"listen": listen},
            "vantages": [{"name": "here", "timezone": "UTC"}],
            "targets": [{"name": "site", "url": "https://127.0.0.1:9/"}],
        },
        "<test>",
    )


class FakeServer:
    def __init__(self, where: tuple[str, int]) -> None:
        self.where = where
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_no_address_at_all_leaves_the_metrics_unserved_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    refused: list[tuple[str, int]] = []

    async def refuse(metrics: Metrics, host: str, port: int) -> FakeServer:
        refused.append((host, port))
        raise OSError(98, "Address already in use")

    daemon = Daemon(tmp_path / "curfew.yaml", config("127.0.0.1:9101"))
    old = FakeServer(("127.0.0.1", 9101))
    daemon.server = old  # type: ignore[assignment]
    monkeypatch.setattr(run_module, "serve_metrics", refuse)
    with caplog.at_level(logging.INFO, logger="curfew"):
        assert await daemon._rebind(Metrics(), config("127.0.0.1:9102")) is False
    # The new address twice (before and after freeing the old), then the old one.
    assert refused == [("127.0.0.1", 9102), ("127.0.0.1", 9102), ("127.0.0.1", 9101)]
    assert old.closed and daemon.server is None
    assert "event=reload-key-refused key=metrics.listen" in caplog.text
    assert "event=metrics-unserved listen=127.0.0.1:9101" in caplog.text
    assert "retry=next-reload" in caplog.text

    # The next attempt binds again once an address is free.
    async def accept(metrics: Metrics, host: str, port: int) -> FakeServer:
        return FakeServer((host, port))

    monkeypatch.setattr(run_module, "serve_metrics", accept)
    assert await daemon._rebind(Metrics(), config("127.0.0.1:9101")) is True
    assert isinstance(daemon.server, FakeServer) and daemon.server.where == ("127.0.0.1", 9101)
