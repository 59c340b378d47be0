"""SIGHUP: every config key either takes effect or is refused with one line naming it.

In process: the classification covers every key and matches docs/configuration.md, and the
pieces a reload reaches (the prober's concurrency gate, the episode detector's hysteresis) do
change. As a subprocess: a restart-only key is refused and the old value kept, the metrics
endpoint moves, and what changed is named."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from probe.config import RELOADABLE, RESTART_ONLY, Config, parse_config, reload_changes
from probe.daemon.prober import Prober
from probe.episodes.model import Observation
from probe.episodes.monitor import Monitor
from probe.model import Measurement
from tests.daemon.harness import Daemon, free_port, query
from tests.daemon.test_failures import offline_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BASE: dict[str, Any] = {
    "vantages": [{"name": "here"}],
    "targets": [{"name": "a", "url": "https://a.example/"}, {"name": "b", "url": "https://b.example/"}],
}


def config(**overrides: Any) -> Config:
    return parse_config({**BASE, **overrides})


def test_every_top_level_key_is_either_reloadable_or_restart_only() -> None:
    assert set(Config.model_fields) == RELOADABLE | RESTART_ONLY
    assert not RELOADABLE & RESTART_ONLY


def test_the_documented_column_matches_the_code() -> None:
    text = DOCS.read_text()
    table = text[text.index("## Top level") : text.index("## Reloading")]
    documented: dict[str, str] = {}
    for row in re.findall(r"^\| `([a-z_.]+)` \|[^|]*\| ([a-z ]+) \|", table, re.MULTILINE):
        documented[row[0].split(".")[0]] = row[1]
    assert set(documented) == set(Config.model_fields)
    assert {k for k, v in documented.items() if v == "restart only"} == RESTART_ONLY
    assert {k for k, v in documented.items() if v == "reloads"} == RELOADABLE


def test_restart_only_keys_are_refused_and_kept_the_rest_applied() -> None:
    running = config()
    new = config(
        database="postgresql://u:p@db/curfew",
        data_dir="/elsewhere",
        max_concurrency=3,
        metrics={"listen": "127.0.0.1:9999"},
    )
    r = reload_changes(running, new)
    assert r.refused == ["data_dir", "database"]
    assert r.applied == ["max_concurrency", "metrics"]
    assert (r.config.database, r.config.data_dir) == (running.database, running.data_dir)
    assert (r.config.max_concurrency, r.config.metrics.listen) == (3, "127.0.0.1:9999")
    assert reload_changes(running, config()).applied == []


async def test_max_concurrency_takes_effect_for_new_runs() -> None:
    in_flight = 0
    peak = 0
    release = asyncio.Event()

    async def measure(vantage: str, target: str) -> Measurement:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return Measurement(vantage, target, "https://x/", datetime.now(UTC), 0.0)

    prober = Prober(config(max_concurrency=1), measure_fn=measure)

    async def burst() -> int:
        nonlocal peak
        peak = 0
        release.clear()
        runs = [asyncio.ensure_future(prober.run("here", t)) for t in ("a", "b")]
        await asyncio.sleep(0.05)
        seen = peak
        release.set()
        await asyncio.gather(*runs)
        return seen

    assert await burst() == 1
    prober.swap(config(max_concurrency=2))
    assert await burst() == 2


def test_confirm_count_reaches_the_episode_detector() -> None:
    monitor = Monitor({"here": "UTC"}, open_after=2, close_after=2)
    t = datetime(2019, 5, 20, 14, 0, tzinfo=UTC)

    def blocked(minute: int) -> list[str]:
        events = monitor.observe(Observation("here", "a", t + timedelta(minutes=minute), "tls_blocked"))
        return [e.kind for e in events]

    assert blocked(0) == []
    monitor.set_thresholds(3, 3, 0.0)  # a reload: confirm_count 2 -> 3
    assert blocked(1) == []  # two in a row no longer open an episode
    assert blocked(2) == ["opened"]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path / "curfew.yaml", offline_config(tmp_path, f"sqlite:///{tmp_path / 'a.db'}"))
    try:
        yield d
    finally:
        await d.kill()


async def reachable(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(url, timeout=5)).status_code == 200
    except httpx.TransportError:
        return False


async def test_sighup_refuses_restart_only_keys_moves_metrics_and_names_what_changed(
    daemon: Daemon, tmp_path: Path
) -> None:
    await daemon.start()
    old_metrics = daemon.metrics_url
    first = dict(daemon.config)
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= 1, 30, "a measurement")
    new_port = free_port()
    daemon.write(
        dict(
            first,
            database=f"sqlite:///{tmp_path / 'b.db'}",
            max_concurrency=2,
            confirm_count=3,
            metrics={"listen": f"127.0.0.1:{new_port}"},
        )
    )
    daemon.send(signal.SIGHUP)
    await daemon.wait_for(lambda: daemon.seen("event=reloaded "), 15, "the reload")
    refused = [line for line in daemon.lines if "event=reload-key-refused" in line]
    assert len(refused) == 1 and "key=database reason=restart-only" in refused[0], refused
    reloaded = next(line for line in daemon.lines if "event=reloaded " in line)
    assert "changed=confirm_count,max_concurrency,metrics" in reloaded
    # The endpoint moved.
    assert await reachable(daemon.metrics_url)
    assert not await reachable(old_metrics)
    # The database did not: measurements still go to the first one.
    before = len(daemon.measurement_lines())
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= before + 2, 30, "probing to go on")
    assert await daemon.stop() == 0
    (count,) = (await query(first["database"], "SELECT count(*) FROM measurements"))[0]
    assert count == len(daemon.measurement_lines())
    assert not (tmp_path / "b.db").exists()


async def test_a_metrics_address_that_cannot_be_bound_is_refused_and_the_old_one_kept(
    daemon: Daemon,
) -> None:
    await daemon.start()
    old_metrics = daemon.metrics_url
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        daemon.write(dict(daemon.config, metrics={"listen": f"127.0.0.1:{busy}"}, interval=2))
        daemon.send(signal.SIGHUP)
        await daemon.wait_for(lambda: daemon.seen("event=reloaded "), 15, "the reload")
    assert daemon.seen("event=reload-key-refused key=metrics.listen ")
    reloaded = next(line for line in daemon.lines if "event=reloaded " in line)
    assert "changed=interval " in reloaded + " "  # the rest of the file took effect
    assert await reachable(old_metrics)
    assert await daemon.stop() == 0


async def test_a_sighup_storm_leaves_the_daemon_probing_and_stopping_cleanly(daemon: Daemon) -> None:
    await daemon.start()
    daemon.write(dict(daemon.config, max_concurrency=5))
    for _ in range(50):
        daemon.send(signal.SIGHUP)
        await asyncio.sleep(0.01)
    await daemon.wait_for(lambda: daemon.seen("changed=max_concurrency"), 30, "the reload to apply")
    before = len(daemon.measurement_lines())
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= before + 2, 30, "probing to go on")
    assert await daemon.stop() == 0
    assert daemon.seen("event=stopped ")
    assert not any("Traceback" in line for line in daemon.lines)
    # The inventory, synced again by each reload (each cancelling the last), is in place.
    (count,) = (await query(daemon.config["database"], "SELECT count(*) FROM vantages WHERE active"))[0]
    assert count == 1


async def test_a_ca_bundle_openssl_refuses_is_a_rejected_reload_not_a_crash(
    daemon: Daemon, tmp_path: Path
) -> None:
    # One DER SEQUENCE in a PEM block: the config's own check (which a reload runs) takes it,
    # OpenSSL does not (only check and run's preflight ask OpenSSL).
    bundle = tmp_path / "bad.pem"
    der = base64.b64encode(bytes([0x30, 0x03, 0x02, 0x01, 0x01])).decode()
    bundle.write_text(f"-----BEGIN CERTIFICATE-----\n{der}\n-----END CERTIFICATE-----\n")
    await daemon.start()
    daemon.write(dict(daemon.config, tls={"ca_bundle": str(bundle)}, interval=2))
    daemon.send(signal.SIGHUP)
    await daemon.wait_for(lambda: daemon.seen("event=reload-rejected "), 15, "the reload to be rejected")
    before = len(daemon.measurement_lines())
    await daemon.wait_for(lambda: len(daemon.measurement_lines()) >= before + 2, 30, "probing to go on")
    assert await daemon.stop() == 0
    assert daemon.seen("event=stopped ")
    assert not any("Traceback" in line for line in daemon.lines)
