"""`curfew check` refuses, in one line naming the key and with exit 2, each config that
`curfew run` used to accept and then crash on or probe uselessly with (issue 12, item 6)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.config import parse_config
from probe.daemon import lock

MINIMAL: dict[str, Any] = {
    "metrics": {"listen": "127.0.0.1:0"},
    "vantages": [{"name": "local", "resolver": "127.0.0.1:5053"}],
    "targets": [{"name": "example", "url": "https://www.example.com/"}],
}


def check(tmp_path: Path, config: dict[str, Any] | bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "curfew.yaml"
    if isinstance(config, bytes):
        path.write_bytes(config)
    else:
        config.setdefault("data_dir", str(tmp_path / "data"))
        path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "probe.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )


def changed(path: str, value: Any) -> dict[str, Any]:
    """MINIMAL with the value at a dotted path (``targets.0.url``) replaced."""
    config: dict[str, Any] = yaml.safe_load(yaml.safe_dump(MINIMAL))
    node: Any = config
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value
    return config


def assert_refused(done: subprocess.CompletedProcess[str], tmp_path: Path, key: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"curfew: error: {tmp_path / 'curfew.yaml'}: {key}: "), done.stderr


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("interval", float("inf"), "interval"),
        ("interval", 1e300, "interval"),
        ("interval", float("nan"), "interval"),
        ("confirm_interval", 1e300, "confirm_interval"),
        ("retention_days", float("inf"), "retention_days"),
        ("retention_days", 1e9, "retention_days"),
        ("probe.throughput_max_bytes", 10**15, "probe.throughput_max_bytes"),
        ("probe.user_agent", "curfew\r\nX-Injected: 1", "probe.user_agent"),
        ("metrics.listen", "127.0.0.1:65536", "metrics.listen"),
        ("targets.0.url", "https://host:999999/", "targets[0].url"),
        ("targets.0.url", "https://exa mple.org/", "targets[0].url"),
        ("targets.0.url", "https://example.org/caf\u00e9", "targets[0].url"),
        ("targets.0.interval", 1e300, "targets[0].interval"),
        ("vantages.0.proxy", "socks5://127.0.0.1:99999", "vantages[0].proxy"),
        ("vantages.0.resolver", "https://dns.example:70000/dns-query", "vantages[0].resolver"),
        ("database", "postgresql://curfew:secret@db:99999/curfew", "database"),
        ("database", "sqlite:///:memory:", "database"),
        ("database", "postgresql://curfew@db/curfew?sslmode=require", "database"),
        ("database", "postgresql://curfew:p@ss@db/curfew", "database"),  # "@" must be %40
        ("probe.timeouts.total", 1e-300, "probe.timeouts.total"),
        ("data_dir", "/proc/curfew-data", "data_dir"),  # root passes os.access, not a real write
    ],
)
def test_values_run_cannot_use_are_refused_naming_the_key(
    tmp_path: Path, path: str, value: Any, key: str
) -> None:
    assert_refused(check(tmp_path, changed(path, value)), tmp_path, key)


@pytest.mark.parametrize(
    "body",
    [
        "not base64",
        "AAAA",  # base64, but no DER certificate: the config's own check refuses it (so does SIGHUP)
        "MAMBAgM=",  # a DER SEQUENCE, not a certificate: only OpenSSL can tell (check and run do)
    ],
)
def test_a_ca_bundle_that_is_not_a_certificate_is_refused(tmp_path: Path, body: str) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    assert_refused(check(tmp_path, changed("tls.ca_bundle", str(bundle))), tmp_path, "tls.ca_bundle")


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    assert_refused(check(tmp_path, changed("data_dir", str(tmp_path / "data"))), tmp_path, "data_dir")


def test_a_spool_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "spool").write_text("")
    assert_refused(check(tmp_path, changed("data_dir", str(tmp_path / "data"))), tmp_path, "data_dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_data_dir_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        done = check(tmp_path, changed("data_dir", str(locked / "data")))
    finally:
        locked.chmod(0o700)
    assert_refused(done, tmp_path, "data_dir")


def test_a_metrics_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = check(tmp_path, changed("metrics.listen", f"127.0.0.1:{port}"))
    assert_refused(done, tmp_path, "metrics.listen")
    assert "in use" in done.stderr


def test_the_running_daemons_own_port_is_a_note_not_an_error(tmp_path: Path) -> None:
    """`check` against the config of a daemon that runs: its port is taken by that daemon
    (it holds the data_dir's lock), so the file is valid and the note says why."""
    data_dir = tmp_path / "data"
    fd = lock.acquire(data_dir)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = check(tmp_path, changed("metrics.listen", f"127.0.0.1:{port}"))
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert f"in use by the curfew running on this data_dir (pid {os.getpid()})" in done.stderr


def test_the_metrics_address_must_be_on_this_machine(tmp_path: Path) -> None:
    done = check(tmp_path, changed("metrics.listen", "192.0.2.1:9716"))  # TEST-NET-1, never local
    assert_refused(done, tmp_path, "metrics.listen")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"interval: 300\nvantages: \xff\xfe\n", "not UTF-8"),
        (b"a: " + b"[" * 600 + b"]" * 600 + b"\n", "nested"),
        (b"interval: 1" + b"0" * 5000 + b"\n", "not valid YAML"),
        (b"a: " + b"{b: " * 600 + b"1" + b"}" * 600 + b"\n", "nested"),
        (
            b"interval: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
            "nested",
        ),
    ],
)
def test_undecodable_and_absurdly_nested_files_are_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    done = check(tmp_path, content)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr


def test_a_source_address_that_is_not_on_this_machine_is_refused(tmp_path: Path) -> None:
    done = check(tmp_path, changed("vantages.0.source_address", "192.0.2.1"))  # TEST-NET-1
    assert_refused(done, tmp_path, "vantages[0].source_address")


def test_a_valid_config_is_ok(tmp_path: Path) -> None:
    done = check(tmp_path, changed("interval", 604800))
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("ok (1 vantages, 1 targets)\n")


def test_the_fuzz_oracle_fails_on_what_check_used_to_accept() -> None:
    """The fuzz's proof that run can build a config is not vacuous: given a config that skipped
    validation (a User-Agent with a line break, which h11 refuses to send), it fails as every
    probe of the daemon did."""
    from tests.unit.test_config_fuzz import build_like_run

    config = parse_config(MINIMAL)
    probe = config.probe.model_copy(update={"user_agent": "curfew\r\nX-Injected: 1"})
    with pytest.raises(Exception, match="Illegal header value"):
        build_like_run(config.model_copy(update={"probe": probe}))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("/dev/zero", "larger than 16 MiB"),
        (".", "cannot read: Is a directory"),
        ("missing.yaml", "cannot read"),
    ],
)
def test_a_config_that_is_no_file_is_one_line(tmp_path: Path, config: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "probe.cli", "check", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"curfew: error: {config}: {message}")
    assert done.stderr.count("\n") == 1
