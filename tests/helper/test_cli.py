"""`curfew helper` on the command line: bad flags exit 2 naming the option; it serves and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from probe.cli import main
from probe.helper.protocol import THRequest, dumps, parse_response


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--listen", "nonsense"], "--listen"),
        (["--listen", "example.com:80"], "--listen"),
        (["--listen", "127.0.0.1:99999"], "--listen"),
        (["--resolver", "dns.example"], "--resolver"),
        (["--source-address", "not-an-ip"], "--source-address"),
        (["--token-file", "/nonexistent/token"], "--token-file"),
        (["--ca-bundle", "/nonexistent/ca.pem"], "--ca-bundle"),
        (["--metrics-listen", ":9"], "--metrics-listen"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--allow-private=yes"], "--allow-private"),
    ],
)
def test_a_bad_flag_exits_2_naming_it(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["helper", *argv])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_a_cert_without_its_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["helper", "--tls-cert", str(cert)])
    assert exc.value.code == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("helper:\n  lisen: 127.0.0.1:1\n", "helper.lisen: unknown key"),
        ("helper:\n  rate: -1\n", "helper.rate"),
        ("helper: {}\nvantages: []\n", "vantages: unknown key"),
        ("helper:\n  tls_cert: /nonexistent\n", "helper.tls_cert: file not found"),
    ],
)
def test_a_bad_config_file_exits_2_naming_the_key(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "helper.yaml"
    path.write_text(text)
    assert main(["helper", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_command_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "probe.cli", "helper", "--listen", f"127.0.0.1:{port}", "--allow-private"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()
        assert "event=helper-started" in started and f"url=http://127.0.0.1:{port}/" in started
        # An unreachable target still gets a full answer.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        body = dumps(THRequest(f"http://127.0.0.1:{dead}/"))
        resp = httpx.post(f"http://127.0.0.1:{port}/", content=body, timeout=20, trust_env=False)
        assert resp.status_code == 200
        answer = parse_response(resp.content)
        assert answer.tcp_connect[f"127.0.0.1:{dead}"].failure == "connection_refused_error"
        assert answer.http_request.status_code == -1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()
