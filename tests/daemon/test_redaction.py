"""A planted password never comes out: not in a log line, a metric, a command's output or the
spool (issue 12, item 4).

The passwords hold what broke the old pattern (``/``, a space, ``@``, ``:``, ``%``). The
database is PostgreSQL on a refused loopback port and the vantage goes through a SOCKS proxy on
another, so the daemon logs its database trouble and records proxy failures: the paths where a
URL is most likely to be quoted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from probe.redaction import redact, redact_url
from tests.daemon.harness import free_port

CURFEW = [sys.executable, "-m", "probe.cli"]
DB_PASSWORD = "Zq9x/Kk3y Pss@W0rd:Qq7v%"
PROXY_PASSWORD = "Mm4n/Tt8r y@Hh2j:Bb5w%"
# In SQLAlchemy's URLs a password may hold "/", " " and ":" as they are; "@" and "%" are
# percent-encoded. A proxy URL is percent-encoded whole.
DB_URL_PASSWORD = DB_PASSWORD.replace("%", "%25").replace("@", "%40")


def forms(password: str) -> list[str]:
    """The password as written, encoded, with `_` for spaces, and each run of 4+ letters."""
    pieces = password.replace("/", " ").replace("@", " ").replace(":", " ").split()
    return [
        password,
        quote(password, safe=""),
        password.replace(" ", "_"),
        *[p for p in pieces if len(p) >= 4],
    ]


HELPER_TOKEN = "Hx4tokenVv9w"
SECRETS = [*forms(DB_PASSWORD), *forms(PROXY_PASSWORD), HELPER_TOKEN]


def assert_clean(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{where} shows {leaked}:\n{text}"


def config(tmp_path: Path) -> dict[str, Any]:
    token = tmp_path / "helper.token"
    token.write_text(HELPER_TOKEN + "\n")
    return {
        # A test helper on a refused port, with a bearer token from a file.
        "helpers": [{"url": f"http://127.0.0.1:{free_port()}/", "token_file": str(token)}],
        "interval": 2,
        "confirm_interval": 1,
        "grace_period": 2,
        "data_dir": str(tmp_path / "data"),
        "database": f"postgresql://curfew:{DB_URL_PASSWORD}@127.0.0.1:{free_port()}/curfew",
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "probe": {"timeouts": {"dns": 0.5, "tcp_connect": 0.5, "total": 2}},
        "vantages": [
            {
                "name": "proxied",
                "proxy": f"socks5://alice:{quote(PROXY_PASSWORD, safe='')}@127.0.0.1:{free_port()}",
            }
        ],
        "targets": [{"name": "refused", "url": "http://127.0.0.1:1/"}],
    }


def curfew(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CURFEW, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "curfew.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path)))
    return path


def test_the_forms_are_what_is_planted() -> None:
    assert "Kk3y" in SECRETS and "W0rd:Qq7v%" in DB_PASSWORD
    assert_clean("nothing", "event=ready database=postgresql://curfew:***@127.0.0.1:5432/curfew")


def test_commands_never_print_the_password(config_path: Path, tmp_path: Path) -> None:
    url = yaml.safe_load(config_path.read_text())["database"]
    outputs = {
        "check": curfew("check", "--config", str(config_path), cwd=tmp_path),
        "db check": curfew("db", "check", "--config", str(config_path), cwd=tmp_path),
        "db upgrade": curfew("db", "upgrade", "--config", str(config_path), cwd=tmp_path),
        "report": curfew("report", "--config", str(config_path), cwd=tmp_path),
        "report --db": curfew("report", "--db", url, cwd=tmp_path),
        "export --db": curfew("export", "--ooni", "--db", url, cwd=tmp_path),
        "analyze": curfew("analyze", "--config", str(config_path), "--rebuild", cwd=tmp_path),
    }
    assert outputs["check"].returncode == 0, outputs["check"].stderr
    for name, done in outputs.items():
        assert "Traceback" not in done.stderr, (name, done.stderr)
        assert_clean(name, done.stdout + done.stderr)
    # The database is refused: the commands that use it say so in one line.
    for name in ("db check", "db upgrade", "report", "report --db", "export --db"):
        assert outputs[name].returncode == 1, (name, outputs[name].stderr)
        assert "curfew: error:" in outputs[name].stderr


def test_a_bad_config_error_never_quotes_the_password(tmp_path: Path) -> None:
    bad = config(tmp_path)
    bad["database"] = f"postgresql://curfew:{DB_URL_PASSWORD}@127.0.0.1:99999/curfew"
    bad["vantages"][0]["proxy"] = f"socks5://alice:{PROXY_PASSWORD}@127.0.0.1:1080"  # raw: unparsable
    path = tmp_path / "bad.yaml"
    for key in ("database", "proxy"):
        data = config(tmp_path)
        if key == "database":
            data["database"] = bad["database"]
        else:
            data["vantages"] = bad["vantages"]
        path.write_text(yaml.safe_dump(data))
        done = curfew("check", "--config", str(path), cwd=tmp_path)
        assert done.returncode == 2 and key in done.stderr, done.stderr
        assert_clean(f"check with a bad {key}", done.stderr)


def test_the_daemon_never_logs_exports_or_spools_the_password(config_path: Path, tmp_path: Path) -> None:
    listen = yaml.safe_load(config_path.read_text())["metrics"]["listen"]
    proc = subprocess.Popen(
        [*CURFEW, "run", "--config", str(config_path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    metrics = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                metrics = httpx.get(f"http://{listen}/metrics", timeout=2).text
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if "curfew_measurements_total{" in metrics or 'vantage="proxied"' in metrics:
                break
            time.sleep(0.5)
        time.sleep(3)  # a few probe rounds through the refused proxy, spooled for the refused database
        metrics = httpx.get(f"http://{listen}/metrics", timeout=2).text
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert "event=ready" in err, err
    ready = next(line for line in err.splitlines() if "event=ready" in line)
    assert "database=postgresql://curfew:***@127.0.0.1:" in ready
    assert "event=measurement" in err  # probes ran, so the proxy was used
    assert_clean("the log", out + err)
    assert_clean("/metrics", metrics)
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert_clean("data_dir", spooled.decode("utf-8", "replace"))


def test_a_raw_at_sign_in_the_database_password_is_refused_without_quoting_it(tmp_path: Path) -> None:
    """SQLAlchemy would end the password at its first "@" and take the rest for the host."""
    data = config(tmp_path)
    data["database"] = f"postgresql://curfew:{DB_PASSWORD}@127.0.0.1:5432/curfew"  # "@" not encoded
    path = tmp_path / "raw.yaml"
    path.write_text(yaml.safe_dump(data))
    for command in ("check", "run"):
        done = curfew(command, "--config", str(path), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "database: " in done.stderr and "percent-encoded (%40)" in done.stderr
        assert_clean(command, done.stdout + done.stderr)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:a/b c@d@host:5432/db", "postgresql://u:***@host:5432/db"),
        ("postgresql://u:p%40ss@host/db", "postgresql://u:***@host/db"),
        ("socks5://alice:x%2Fy@127.0.0.1:1080", "socks5://alice:***@127.0.0.1:1080"),
        ("https://token@doh.example/dns-query", "https://***@doh.example/dns-query"),
        ("https://doh.example/dns-query", "https://doh.example/dns-query"),
        ("sqlite:///data/curfew.db", "sqlite:///data/curfew.db"),
    ],
)
def test_redact_url_masks_any_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_free_text_masks_urls_whatever_their_password_holds() -> None:
    assert redact("reason=postgresql://u:a/b@c@h/db refused") == "reason=postgresql://***@h/db refused"
