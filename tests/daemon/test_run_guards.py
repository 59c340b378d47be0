"""`curfew run` refuses a second daemon on one data_dir in one line, and what it writes is not
world-readable even outside systemd (issue 12, item 9)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.harness import free_port

CURFEW = [sys.executable, "-m", "probe.cli"]
READY_WITHIN = 60.0


def quiet_config(tmp_path: Path) -> dict[str, Any]:
    """A daemon that probes a refused loopback port once an hour: it starts and idles."""
    return {
        "interval": 3600,
        "data_dir": str(tmp_path / "data"),
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "probe": {"timeouts": {"dns": 0.5, "tcp_connect": 0.5, "total": 2}},
        "vantages": [{"name": "local", "resolver": "127.0.0.1:1"}],
        "targets": [{"name": "refused", "url": "http://127.0.0.1:1/"}],
    }


def start(config_path: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CURFEW, "run", "--config", str(config_path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        umask=0o022,  # the usual login umask, which the daemon must not rely on
    )


def wait_ready(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "event=ready" in line:
            return lines
    raise AssertionError(f"no event=ready: {''.join(lines)}")


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    config_path = tmp_path / "curfew.yaml"
    config_path.write_text(yaml.safe_dump(quiet_config(tmp_path)))
    proc = start(config_path, tmp_path)
    try:
        wait_ready(proc)
        yield proc, config_path
    finally:
        stop(proc)


def test_a_second_daemon_on_the_same_data_dir_exits_1_in_one_line(
    daemon: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    first, config_path = daemon
    # Its own metrics port, so that only the data_dir is shared.
    second_config = yaml.safe_load(config_path.read_text())
    second_config["metrics"]["listen"] = f"127.0.0.1:{free_port()}"
    second_path = tmp_path / "second.yaml"
    second_path.write_text(yaml.safe_dump(second_config))
    done = subprocess.run(
        [*CURFEW, "run", "--config", str(second_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("curfew: error:")]
    assert len(errors) == 1, done.stderr
    assert f"is in use by another curfew run (pid {first.pid}" in errors[0]
    assert str(tmp_path / "data") in errors[0]
    assert first.poll() is None  # the first one is untouched


def test_what_the_daemon_writes_is_not_world_readable(
    daemon: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    proc, _ = daemon
    stop(proc)
    written = list((tmp_path / "data").rglob("*"))
    assert any(p.name == "curfew.db" for p in written)
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o007 == 0, f"{path} is {oct(mode)}"


def test_a_data_dir_that_is_in_the_way_is_one_line(tmp_path: Path) -> None:
    config = quiet_config(tmp_path)
    (tmp_path / "data").write_text("a file where the directory should be")
    config_path = tmp_path / "curfew.yaml"
    config_path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [*CURFEW, "run", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{config_path}: data_dir: " in done.stderr


def test_a_metrics_port_in_use_stops_run_in_one_line(tmp_path: Path) -> None:
    config = quiet_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config["metrics"]["listen"] = f"127.0.0.1:{taken.getsockname()[1]}"
        config_path = tmp_path / "curfew.yaml"
        config_path.write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [*CURFEW, "run", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"curfew: error: {config_path}: metrics.listen: cannot listen on" in done.stderr
